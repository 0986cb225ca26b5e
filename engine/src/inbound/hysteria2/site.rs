//! The static-site masquerade: the files of a directory, read once when the inbound starts and
//! served by path, the way a plain file server would (Go's `http.FileServer`, which the
//! reference server uses for its `file` masquerade).
//!
//! Files are held in memory so that an answer never touches the disk on an executor; a site is
//! bounded ([`MAX_SITE_BYTES`], [`MAX_FILES`]) and a change on disk shows after a restart or an
//! inbound re-apply. Symbolic links are not followed, so nothing outside the directory is
//! served.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use percent_encoding::percent_decode_str;

/// Most bytes a site may hold.
pub(crate) const MAX_SITE_BYTES: u64 = 64 << 20;
/// Most files a site may hold.
pub(crate) const MAX_FILES: usize = 10_000;
/// Deepest directory nesting read.
const MAX_DEPTH: usize = 16;

/// One file: its media type and contents (every answer shares them, no copy).
pub(crate) struct SiteFile {
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
}

/// What a path resolves to.
pub(crate) enum Lookup<'a> {
    File(&'a SiteFile),
    /// A directory asked for without its trailing slash: go to this path.
    Redirect(String),
    NotFound,
}

/// A directory's files by URL path (`/a/b.html`).
pub(crate) struct StaticSite {
    files: HashMap<String, SiteFile>,
}

impl StaticSite {
    /// Reads every regular file under `dir`. The error says what is wrong (for the config
    /// error that names the field).
    pub(crate) fn load(dir: &Path) -> Result<StaticSite, String> {
        let mut site = StaticSite {
            files: HashMap::new(),
        };
        let mut bytes = 0;
        site.read_dir(dir, "", 0, &mut bytes)?;
        Ok(site)
    }

    fn read_dir(
        &mut self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        bytes: &mut u64,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{}: nested deeper than {MAX_DEPTH} directories",
                dir.display()
            ));
        }
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            // Names that are not UTF-8 cannot be asked for by URL path: skipped.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let url = format!("{prefix}/{name}");
            if kind.is_dir() {
                self.read_dir(&path, &url, depth + 1, bytes)?;
            } else if kind.is_file() {
                let body = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                *bytes += body.len() as u64;
                if *bytes > MAX_SITE_BYTES {
                    return Err(format!("more than {} MiB of files", MAX_SITE_BYTES >> 20));
                }
                if self.files.len() == MAX_FILES {
                    return Err(format!("more than {MAX_FILES} files"));
                }
                let content_type = mime_guess::from_path(&path)
                    .first_or_octet_stream()
                    .to_string();
                let body = Bytes::from(body);
                self.files.insert(url, SiteFile { content_type, body });
            }
        }
        Ok(())
    }

    /// Resolves a request's `:path`: the query and fragment dropped, percent-decoded, `.`
    /// and `..` resolved inside the site; a path ending in `/` means its `index.html`.
    pub(crate) fn lookup(&self, path: &str) -> Lookup<'_> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let Ok(path) = percent_decode_str(path).decode_utf8() else {
            return Lookup::NotFound;
        };
        let mut segments: Vec<&str> = Vec::new();
        for s in path.split('/') {
            match s {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                s => segments.push(s),
            }
        }
        let clean = format!("/{}", segments.join("/"));
        if segments.is_empty() || path.ends_with('/') {
            let index = if segments.is_empty() {
                "/index.html".to_owned()
            } else {
                format!("{clean}/index.html")
            };
            return self
                .files
                .get(&index)
                .map_or(Lookup::NotFound, Lookup::File);
        }
        if let Some(file) = self.files.get(&clean) {
            return Lookup::File(file);
        }
        if self.files.contains_key(&format!("{clean}/index.html")) {
            return Lookup::Redirect(format!("{clean}/"));
        }
        Lookup::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site under a directory of its own (`name`: tests run in parallel in one process).
    fn site(name: &str) -> (StaticSite, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("marzneshin-site-{name}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("docs/a b")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(dir.join("style.css"), "body{}").unwrap();
        std::fs::write(dir.join("docs/index.html"), "docs").unwrap();
        std::fs::write(dir.join("docs/a b/x.json"), "{}").unwrap();
        std::fs::write(dir.join("blob"), [0u8, 1, 2]).unwrap();
        let outside =
            std::env::temp_dir().join(format!("marzneshin-secret-{name}-{}", std::process::id()));
        std::fs::write(&outside, "secret").unwrap();
        let _ = std::os::unix::fs::symlink(&outside, dir.join("link"));
        (StaticSite::load(&dir).unwrap(), dir)
    }

    fn body(l: Lookup<'_>) -> Option<(String, Vec<u8>)> {
        match l {
            Lookup::File(f) => Some((f.content_type.clone(), f.body.to_vec())),
            _ => None,
        }
    }

    #[test]
    fn paths_resolve_like_a_file_server() {
        let (s, dir) = site("paths");
        let home = Some(("text/html".to_owned(), b"<h1>home</h1>".to_vec()));
        assert_eq!(body(s.lookup("/")), home);
        assert_eq!(body(s.lookup("/index.html?x=1#top")), home);
        assert_eq!(body(s.lookup("/./docs/../index.html")), home);
        assert_eq!(body(s.lookup("/style.css")).unwrap().0, "text/css");
        assert_eq!(body(s.lookup("/docs/")).unwrap().1, b"docs");
        assert_eq!(
            body(s.lookup("/docs/a%20b/x.json")).unwrap().0,
            "application/json"
        );
        assert_eq!(
            body(s.lookup("/blob")).unwrap().0,
            "application/octet-stream"
        );
        assert!(matches!(s.lookup("/docs"), Lookup::Redirect(p) if p == "/docs/"));
        assert!(matches!(s.lookup("/missing"), Lookup::NotFound));
        assert!(matches!(s.lookup("/docs/a%20b/"), Lookup::NotFound));
        assert!(matches!(s.lookup("/%ff"), Lookup::NotFound));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nothing_outside_the_directory_is_served() {
        let (s, dir) = site("outside");
        // `..` stops at the site's root; symbolic links are not followed.
        assert_eq!(body(s.lookup("/../../../../etc/passwd")), None);
        assert_eq!(body(s.lookup("/%2e%2e/%2e%2e/etc/passwd")), None);
        assert_eq!(body(s.lookup("/link")), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_that_names_it() {
        let err = StaticSite::load(Path::new("/nonexistent/site"))
            .err()
            .unwrap();
        assert!(err.starts_with("/nonexistent/site: "), "{err}");
    }
}
