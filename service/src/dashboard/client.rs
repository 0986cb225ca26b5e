//! Writes `service/dashboard/api.js`, the dashboard's API client, from the OpenAPI document:
//! a JSDoc `@typedef` per schema, the enums' values as arrays (forms use them for their
//! choices) and one method per operation, on top of the hand-written `api-base.js` (requests,
//! errors). `marzneshin openapi --client` prints it; the test
//! `service/tests/dashboard_client.rs` fails when the checked-in copy is stale.
//!
//! Method names come from the method and the path, so they need no operation ids:
//! `GET /users/{username}/usage` is `getUsersByUsernameUsage(username, query)`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The command that regenerates the checked-in client.
pub const REGENERATE: &str = "cargo run -p service -- openapi --client > service/dashboard/api.js";

/// The JavaScript client for `spec` (an OpenAPI 3 document).
pub fn generate(spec: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// The Marzneshin API client, generated from openapi/openapi.json by\n\
         //     {REGENERATE}\n\
         // Do not edit: change the API, then regenerate.\n\
         // @ts-check\n"
    );
    // The hand-written part: requests, errors (service/dashboard/api-base.js).
    out.push_str(
        "import { ApiBase, ApiError } from \"./api-base.js\";\n\
         export { ApiBase, ApiError };\n\n\
         /** @typedef {import(\"./api-base.js\").ApiOptions} ApiOptions */\n\n",
    );
    let empty = Map::new();
    let schemas = spec["components"]["schemas"].as_object().unwrap_or(&empty);
    for (name, schema) in schemas {
        write_schema(&mut out, name, schema);
    }
    let servers = spec["servers"][0]["url"].as_str().unwrap_or("");
    let _ = writeln!(
        out,
        "\n/** One method per API operation. */\nexport class Api extends ApiBase {{\n  \
         /** @param {{ApiOptions}} [options] */\n  constructor(options = {{}}) {{\n    \
         super({{ base: {}, ...options }});\n  }}",
        js_string(servers)
    );
    let paths = spec["paths"].as_object().unwrap_or(&empty);
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            write_operation(&mut out, path, method, op);
        }
    }
    out.push_str("}\n");
    out
}

fn js_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A schema as a JSDoc type expression.
fn js_type(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or("*").to_owned();
    }
    if let Some(all) = schema["allOf"].as_array() {
        if let Some(first) = all.iter().find(|s| s.get("$ref").is_some()) {
            return js_type(first);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let parts: Vec<String> = values
            .iter()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .collect();
        return format!("({})", parts.join("|"));
    }
    match schema["type"].as_str() {
        Some("integer" | "number") => "number".into(),
        Some("string") => "string".into(),
        Some("boolean") => "boolean".into(),
        Some("array") => format!("Array<{}>", js_type(&schema["items"])),
        Some("object") if schema.get("properties").is_some() => {
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let fields: Vec<String> = props
                .iter()
                .map(|(k, v)| format!("{k}: {}", js_type(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Some("object") => "Object<string, *>".into(),
        _ => "*".into(),
    }
}

/// Text for a one-line comment.
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("*/", "* /")
}

fn write_schema(out: &mut String, name: &str, schema: &Value) {
    let description = one_line(schema["description"].as_str().unwrap_or(name));
    if let Some(values) = schema["enum"].as_array() {
        let _ = writeln!(
            out,
            "/** {description} @typedef {{{}}} {name} */",
            js_type(schema)
        );
        let list: Vec<String> = values
            .iter()
            .map(|v| serde_json::to_string(v).unwrap_or_default())
            .collect();
        let _ = writeln!(
            out,
            "/** @type {{ReadonlyArray<{name}>}} */\nexport const {name}Values = Object.freeze([{}]);\n",
            list.join(", ")
        );
        return;
    }
    let _ = writeln!(out, "/**\n * {description}\n * @typedef {{Object}} {name}");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema["properties"].as_object() {
        for (prop, p) in props {
            let field = if required.contains(&prop.as_str()) {
                prop.clone()
            } else {
                format!("[{prop}]")
            };
            let _ = writeln!(
                out,
                " * @property {{{}}} {field} {}",
                js_type(p),
                one_line(p["description"].as_str().unwrap_or(""))
            );
        }
    }
    out.push_str(" */\n\n");
}

/// `GET /users/{username}/usage` -> `getUsersByUsernameUsage`.
pub fn method_name(method: &str, path: &str) -> String {
    let mut name = method.to_ascii_lowercase();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let (prefix, word) = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => ("By", param),
            None => ("", segment),
        };
        name.push_str(prefix);
        for part in word.split(['_', '-']).filter(|p| !p.is_empty()) {
            let mut chars = part.chars();
            if let Some(c) = chars.next() {
                name.extend(c.to_uppercase());
                name.push_str(chars.as_str());
            }
        }
    }
    name
}

fn write_operation(out: &mut String, path: &str, method: &str, op: &Value) {
    let no_params = Vec::new();
    let params = op["parameters"].as_array().unwrap_or(&no_params);
    let path_params: Vec<&Value> = params.iter().filter(|p| p["in"] == "path").collect();
    let query_params: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
    let body = op["requestBody"]["content"].as_object().and_then(|c| {
        c.iter()
            .next()
            .map(|(mime, m)| (mime.starts_with("application/x-www-form-urlencoded"), m))
    });
    let ok = &op["responses"]["200"]["content"];
    let returns = match ok.as_object().and_then(|c| c.iter().next()) {
        Some((mime, m)) if mime.starts_with("application/json") => js_type(&m["schema"]),
        Some(_) => "string".into(),
        None => "void".into(),
    };
    let name = method_name(method, path);
    let _ = writeln!(
        out,
        "\n  /**\n   * {}\n   * `{} {path}`",
        one_line(op["summary"].as_str().unwrap_or(&name)),
        method.to_ascii_uppercase()
    );
    let mut args = Vec::new();
    for p in &path_params {
        let n = p["name"].as_str().unwrap_or("arg");
        let _ = writeln!(
            out,
            "   * @param {{{}}} {n} {}",
            js_type(&p["schema"]),
            one_line(p["description"].as_str().unwrap_or(""))
        );
        args.push(n.to_owned());
    }
    if let Some((_, media)) = body {
        let _ = writeln!(out, "   * @param {{{}}} body", js_type(&media["schema"]));
        args.push("body".into());
    }
    if !query_params.is_empty() {
        let fields: Vec<String> = query_params
            .iter()
            .map(|p| {
                format!(
                    "{}{}: {}",
                    p["name"].as_str().unwrap_or("q"),
                    if p["required"] == true { "" } else { "?" },
                    js_type(&p["schema"])
                )
            })
            .collect();
        let _ = writeln!(out, "   * @param {{{{{}}}}} [query]", fields.join(", "));
        args.push("query = {}".into());
    }
    let _ = writeln!(out, "   * @returns {{Promise<{returns}>}}\n   */");
    let url = path_params.iter().fold(js_string(path), |url, p| {
        let n = p["name"].as_str().unwrap_or("arg");
        url.replace(
            &format!("{{{n}}}"),
            &format!("\" + encodeURIComponent({n}) + \""),
        )
    });
    let url = url.replace(" + \"\"", "");
    let mut options = Vec::new();
    if !query_params.is_empty() {
        options.push("query".to_owned());
    }
    match body {
        Some((true, _)) => options.push("form: body".into()),
        Some((false, _)) => options.push("json: body".into()),
        None => {}
    }
    if returns == "string" {
        options.push("text: true".into());
    }
    let _ = writeln!(
        out,
        "  {name}({}) {{\n    return this.request({}, {url}{});\n  }}",
        args.join(", "),
        js_string(&method.to_ascii_uppercase()),
        if options.is_empty() {
            String::new()
        } else {
            format!(", {{ {} }}", options.join(", "))
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_follow_the_path() {
        assert_eq!(
            method_name("get", "/users/{username}/usage"),
            "getUsersByUsernameUsage"
        );
        assert_eq!(method_name("post", "/users"), "postUsers");
        assert_eq!(
            method_name("post", "/users/{username}/revoke_sub"),
            "postUsersByUsernameRevokeSub"
        );
    }

    #[test]
    fn operations_get_typed_methods() {
        let spec = serde_json::json!({
            "servers": [{"url": "/api"}],
            "components": {"schemas": {
                "Color": {"type": "string", "enum": ["red", "blue"], "description": "A color."},
                "Thing": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "integer"},
                    "color": {"allOf": [{"$ref": "#/components/schemas/Color"}]}
                }}
            }},
            "paths": {"/things/{id}": {"put": {
                "summary": "Change a thing.",
                "parameters": [{"name": "id", "in": "path", "schema": {"type": "integer"}}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
            }}}
        });
        let js = generate(&spec);
        assert!(js.contains("@typedef {(\"red\"|\"blue\")} Color"), "{js}");
        assert!(js.contains("export const ColorValues = Object.freeze([\"red\", \"blue\"]);"));
        assert!(js.contains(" * @property {number} id"));
        assert!(js.contains(" * @property {Color} [color]"));
        assert!(js.contains("@returns {Promise<Thing>}"));
        assert!(js.contains(
            "putThingsById(id, body) {\n    return this.request(\"PUT\", \"/things/\" + encodeURIComponent(id), { json: body });"
        ), "{js}");
        assert!(js.contains("super({ base: \"/api\", ...options });"));
    }
}
