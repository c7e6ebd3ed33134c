//! A small YAML emitter for Kubernetes manifests built as `serde_json::Value`s.
//!
//! Manifests are data with maps, lists, strings, numbers and booleans only, so block-style YAML
//! covers them without anchors, tags or multi-line scalars. What must hold:
//! - the same value gives the same bytes: keys come out in insertion order (serde_json's
//!   `preserve_order`), which the builders fix, never a hash map's order;
//! - a string never turns into another type when read back: anything that a YAML 1.1 or 1.2
//!   reader could take for a number, boolean, null, or structure is double-quoted, with JSON
//!   escapes (a JSON string literal is a valid YAML double-quoted scalar).

use serde_json::Value;

/// One document, ending in a newline, without the `---` separator.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

/// Several documents separated by `---` lines.
pub fn documents(docs: &[Value]) -> String {
    docs.iter().map(to_string).collect::<Vec<_>>().join("---\n")
}

fn indent(out: &mut String, n: usize) {
    out.push_str(&" ".repeat(n));
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, level: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first key of a map inside a sequence item shares the `- ` line.
        if i > 0 || level == 0 || !out.ends_with("- ") {
            indent(out, level);
        }
        out.push_str(&string_text(k));
        out.push(':');
        write_value(out, v, level + 2);
    }
}

fn write_seq(out: &mut String, a: &[Value], level: usize) {
    for v in a {
        indent(out, level);
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => write_map(out, m, level + 2),
            Value::Array(inner) if !inner.is_empty() => {
                out.pop();
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

/// After `key:`. Sequences under a key are indented by two more than the key, as kubectl's own
/// examples are.
fn write_value(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, level);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, level);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_text(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words YAML 1.1 readers (still common in Kubernetes tooling) resolve to booleans or null.
const RESERVED: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn string_text(s: &str) -> String {
    let plain = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_style_with_quoting_where_a_reader_could_misread() {
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "svc", "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}},
            "spec": {
                "ports": [{"name": "http-8080", "port": 8080}],
                "args": ["--probe", "/healthz", "no", "kiln://svc", ""],
                "empty": {},
                "none": [],
                "nested": [["a"]],
                "flag": false
            }
        });
        assert_eq!(
            to_string(&v),
            "apiVersion: v1\n\
             metadata:\n  name: svc\n  annotations:\n    prometheus.io/scrape: \"true\"\n    prometheus.io/port: \"8080\"\n\
             spec:\n  ports:\n    - name: http-8080\n      port: 8080\n\
             \x20 args:\n    - \"--probe\"\n    - /healthz\n    - \"no\"\n    - \"kiln://svc\"\n    - \"\"\n\
             \x20 empty: {}\n  none: []\n  nested:\n    -\n      - a\n  flag: false\n"
        );
    }

    #[test]
    fn documents_are_separated() {
        assert_eq!(
            documents(&[json!({"a": 1}), json!({"b": "x y"})]),
            "a: 1\n---\nb: \"x y\"\n"
        );
    }
}
