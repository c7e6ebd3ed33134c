//! Field-by-field differences between two JSON documents (OCI config, manifest, index), named by
//! path (`config.Labels["org.opencontainers.image.revision"]`, `history[3].created_by`) so a
//! mismatch points at the field instead of at a digest.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    pub path: String,
    pub original: String,
    pub rebuilt: String,
}

impl std::fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} in the original, {} in the rebuild",
            self.path, self.original, self.rebuilt
        )
    }
}

/// Every leaf where `a` and `b` differ, in document order (`a`'s keys first).
pub fn diff(a: &Value, b: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<FieldDiff>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = join_key(&path, k);
                match y.get(k) {
                    Some(vb) => walk(va, vb, p, out),
                    None => out.push(leaf(p, Some(va), None)),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(leaf(join_key(&path, k), None, Some(vb)));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(va, vb, p, out),
                    (va, vb) => out.push(leaf(p, va, vb)),
                }
            }
        }
        _ if a != b => out.push(leaf(path, Some(a), Some(b))),
        _ => {}
    }
}

fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

fn leaf(path: String, a: Option<&Value>, b: Option<&Value>) -> FieldDiff {
    FieldDiff {
        path,
        original: show(a),
        rebuilt: show(b),
    }
}

/// A value for a message: compact JSON, cut to a readable length.
fn show(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "absent".into();
    };
    let s = v.to_string();
    if s.chars().count() > 100 {
        format!("{}…", s.chars().take(100).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_named_by_path() {
        let a = json!({"config": {"Labels": {"org.opencontainers.image.revision": "abc", "x": "1"}},
                       "history": [{"created_by": "base"}, {"created_by": "svc"}]});
        let b = json!({"config": {"Labels": {"org.opencontainers.image.revision": "def", "x": "1"}},
                       "history": [{"created_by": "base"}], "extra": true});
        let d: Vec<String> = diff(&a, &b).iter().map(|d| d.path.clone()).collect();
        assert_eq!(
            d,
            [
                "config.Labels[\"org.opencontainers.image.revision\"]",
                "history[1]",
                "extra"
            ]
        );
        assert_eq!(
            diff(&a, &b)[0].to_string(),
            "config.Labels[\"org.opencontainers.image.revision\"] is \"abc\" in the original, \"def\" in the rebuild"
        );
        assert!(diff(&a, &a).is_empty());
    }
}
