//! The side-by-side results as an SVG chart, for the docs.
//!
//! One panel per Shadowsocks method and one per protocol measured through a client (VLESS,
//! VMess, Trojan, Hysteria2); in each panel one group of horizontal bars per metric, one bar per
//! server. Bars are scaled to the largest figure of their group and labelled with the figure
//! itself, so a glance compares servers and the label gives the number. Every metric charted is
//! "lower is better" (CPU, memory, latency), so the shortest bar wins. A server with no figure
//! for a metric gets no bar and the label "n/a", never a zero-length bar that reads as a win.
//!
//! Hand-written SVG: the chart is a few rectangles and labels, and a plotting crate would bring
//! font handling we do not need.

use std::fmt::Write as _;

use crate::report::{short_name, Report, Scenario, ServerReport};

const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 120.0;
const BAR_AREA: f64 = WIDTH - LABEL_W - 110.0;
const BAR_H: f64 = 14.0;
const BAR_GAP: f64 = 3.0;
const GROUP_GAP: f64 = 14.0;
const TITLE_H: f64 = 28.0;

/// Colour per server, by its short name; ours stands out.
fn colour(server: &str) -> &'static str {
    match server {
        "marzneshin" => "#d62728",
        "floor" => "#7f7f7f",
        "ssserver" => "#1f77b4",
        "ss-server" => "#2ca02c",
        "sing-box" => "#9467bd",
        "v2ray" => "#ff7f0e",
        "shoes" => "#8c564b",
        "trojan-gfw" => "#e377c2",
        _ => "#17becf",
    }
}

/// Reads one figure off a server report.
type Figure = Box<dyn Fn(&ServerReport) -> Option<f64>>;

/// One metric: its label, unit format, and how to read it off a server report.
struct Metric {
    label: String,
    decimals: usize,
    figure: Figure,
}

fn metrics(streams: usize) -> Vec<Metric> {
    let mut out: Vec<Metric> = Scenario::ALL
        .into_iter()
        .map(|s| Metric {
            label: format!("CPU-s/GiB, {}", s.label(streams)),
            decimals: 3,
            figure: Box::new(move |r: &ServerReport| {
                r.throughput(s).get().map(|t| t.cpu_s_per_gib)
            }),
        })
        .collect();
    out.push(Metric {
        label: "CPU per new connection, us".into(),
        decimals: 1,
        figure: Box::new(|r| r.connections.get().map(|c| c.us_per_connection)),
    });
    out.push(Metric {
        label: "round trip p99, us".into(),
        decimals: 1,
        figure: Box::new(|r| r.round_trip.get().map(|t| t.p99_us)),
    });
    out.push(Metric {
        label: "RSS per idle connection, KiB".into(),
        decimals: 1,
        figure: Box::new(|r| r.idle.get().map(|i| i.kib_per_connection)),
    });
    out.push(Metric {
        label: "peak RSS, MiB".into(),
        decimals: 1,
        figure: Box::new(|r| r.peak_rss_kib.get().map(|k| *k as f64 / 1024.0)),
    });
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart of a report, as an SVG document.
pub fn svg(report: &Report) -> String {
    let metrics = metrics(report.parallel_streams);
    let mut body = String::new();
    let mut y = 40.0;
    let methods = report.methods.iter().map(|method| {
        let servers: Vec<&ServerReport> = std::iter::once(&method.floor)
            .chain(method.peers.iter())
            .chain(std::iter::once(&method.marzneshin))
            .collect();
        (format!("Shadowsocks {}", method.method), servers)
    });
    let proxied = report.proxied.iter().map(|p| {
        let servers: Vec<&ServerReport> = p
            .peers
            .iter()
            .chain(std::iter::once(&p.marzneshin))
            .collect();
        (p.title().to_owned(), servers)
    });
    for (title, servers) in methods.chain(proxied) {
        let servers: Vec<&ServerReport> = servers
            .into_iter()
            .filter(|r| r.unavailable.is_none())
            .collect();
        let _ = writeln!(
            body,
            r#"<text x="10" y="{:.0}" class="method">{} (lower is better)</text>"#,
            y + 18.0,
            escape(&title)
        );
        y += TITLE_H;
        for metric in &metrics {
            let figures: Vec<Option<f64>> = servers.iter().map(|r| (metric.figure)(r)).collect();
            if figures.iter().all(Option::is_none) {
                continue;
            }
            let max = figures.iter().flatten().copied().fold(0.0, f64::max);
            let _ = writeln!(
                body,
                r#"<text x="10" y="{:.0}" class="metric">{}</text>"#,
                y + BAR_H - 2.0,
                escape(&metric.label)
            );
            y += BAR_H + BAR_GAP;
            for (server, figure) in servers.iter().zip(&figures) {
                let name = short_name(&server.name);
                let _ = writeln!(
                    body,
                    r#"<text x="{:.0}" y="{:.0}" class="server" text-anchor="end">{}</text>"#,
                    LABEL_W - 8.0,
                    y + BAR_H - 3.0,
                    escape(name)
                );
                let text = match figure {
                    Some(v) => {
                        let w = if max > 0.0 { v / max * BAR_AREA } else { 0.0 };
                        let _ = writeln!(
                            body,
                            r#"<rect x="{LABEL_W:.0}" y="{y:.1}" width="{w:.1}" height="{BAR_H:.0}" fill="{}"/>"#,
                            colour(name)
                        );
                        (w, format!("{v:.*}", metric.decimals))
                    }
                    None => (0.0, "n/a".to_owned()),
                };
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.0}" class="value">{}</text>"#,
                    LABEL_W + text.0 + 4.0,
                    y + BAR_H - 3.0,
                    text.1
                );
                y += BAR_H + BAR_GAP;
            }
            y += GROUP_GAP;
        }
        y += GROUP_GAP;
    }
    let height = y + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="sans-serif">"#
    );
    svg.push_str(
        "<style>.title{font-size:16px;font-weight:bold}.method{font-size:15px;font-weight:bold}\
         .metric{font-size:12px;font-weight:bold}.server,.value{font-size:11px}</style>\n",
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="10" y="22" class="title">Side by side, {} mode, revision {}: {}</text>"##,
        escape(&report.mode),
        escape(&report.revision),
        escape(&report.machine.cpu)
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{MethodReport, Outcome, ProtocolReport, Throughput};

    fn report() -> Report {
        let mut ours = ServerReport::skipped("marzneshin aes-256-gcm", "test");
        ours.upload = Outcome::Measured(Throughput {
            bytes: 1 << 30,
            streams: 1,
            wall_s: 1.0,
            server_cpu_s: 0.5,
            server_cpu_ticks: 50,
            cpu_s_per_gib: 0.5,
            runs_cpu_s_per_gib: vec![0.5],
            mb_per_s: 1000.0,
        });
        let mut peer = ours.clone();
        peer.name = "sing-box aes-256-gcm".into();
        if let Outcome::Measured(t) = &mut peer.upload {
            t.cpu_s_per_gib = 1.0;
        }
        // A peer that ran but has no upload figure, and one that could not run at all.
        let mut failed = ServerReport::skipped("ssserver aes-256-gcm", "test");
        failed.download = peer.upload.clone();
        let absent = ServerReport::unavailable("v2ray aes-256-gcm", "(not run)".into(), "x".into());
        let mut hy2_ours = ours.clone();
        hy2_ours.name = "marzneshin hysteria2".into();
        let mut shoes = peer.clone();
        shoes.name = "shoes hysteria2".into();
        Report::test_run(
            vec![MethodReport {
                method: "aes-256-gcm".into(),
                cipher: Outcome::skipped("test"),
                floor: ServerReport::skipped("floor (plain relay)", "test"),
                marzneshin: ours,
                peers: vec![peer, failed, absent],
                targets: Vec::new(),
            }],
            vec![ProtocolReport {
                protocol: "hysteria2".into(),
                setup: "test".into(),
                client: "test".into(),
                floor: None,
                marzneshin: hy2_ours,
                peers: vec![shoes],
                cipher: None,
                targets: Some(Vec::new()),
            }],
        )
    }

    #[test]
    fn bars_scale_to_the_largest_figure_and_missing_figures_say_so() {
        let svg = svg(&report());
        // The upload group: sing-box's 1.0 is the full bar, ours half of it.
        assert!(svg.contains(&format!(
            r#"width="{BAR_AREA:.1}" height="14" fill="{}""#,
            colour("sing-box")
        )));
        assert!(svg.contains(&format!(
            r#"width="{:.1}" height="14" fill="{}""#,
            BAR_AREA / 2.0,
            colour("marzneshin")
        )));
        // ssserver ran but has no upload figure: a label, no bar of its colour in that group.
        assert!(svg.contains(">n/a</text>"));
        // A server that could not run is left out of the chart; metrics nobody measured too.
        assert!(!svg.contains(">v2ray</text>"));
        assert!(!svg.contains("peak RSS"));
        // The Hysteria2 panel, with its own peers.
        assert!(svg.contains(">Hysteria2 (lower is better)</text>"));
        assert!(svg.contains(&format!(r#"fill="{}""#, colour("shoes"))));
        // Text is escaped.
        assert!(svg.contains("cpu &lt;&amp;&gt;"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
