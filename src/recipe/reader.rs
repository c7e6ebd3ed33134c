//! A typed reader over a positioned TOML document.
//!
//! serde would lose the positions we need for `file:line:column` errors, so recipe and toolchain
//! files are read with toml_edit, key by key: each accessor checks the type, records that the key
//! was understood, and [`TableReader::finish`] reports the first key nobody asked for.

use std::collections::BTreeMap;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

use super::diag::{did_you_mean, Diagnostic};

pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    pub fn error(&self, span: Option<Range<usize>>, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.file, &self.text, span, msg)
    }

    pub fn parse(&self) -> Result<ImDocument<String>, Diagnostic> {
        ImDocument::parse(self.text.clone()).map_err(|e| {
            let msg = e.message().trim().replace('\n', "; ");
            self.error(e.span(), format!("invalid TOML: {msg}"))
        })
    }
}

/// A string (or other scalar) together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Option<Range<usize>>,
}

pub struct TableReader<'a> {
    src: &'a Source,
    table: &'a Table,
    path: String,
    known: &'static [&'static str],
}

impl<'a> TableReader<'a> {
    pub fn new(
        src: &'a Source,
        table: &'a Table,
        path: &str,
        known: &'static [&'static str],
    ) -> Self {
        TableReader {
            src,
            table,
            path: path.to_string(),
            known,
        }
    }

    fn qualified(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.key(key).and_then(|k| k.span())
    }

    pub fn table_span(&self) -> Option<Range<usize>> {
        self.table.span()
    }

    /// Rejects every key that is not in the `known` list, suggesting the closest one.
    pub fn finish(&self) -> Result<(), Diagnostic> {
        for (key, _) in self.table.iter() {
            if !self.known.contains(&key) {
                let where_ = if self.path.is_empty() {
                    String::new()
                } else {
                    format!(" in [{}]", self.path)
                };
                return Err(self
                    .src
                    .error(self.key_span(key), format!("unknown key `{key}`{where_}"))
                    .with_help(did_you_mean(key, self.known.iter().copied())));
            }
        }
        Ok(())
    }

    fn value(&self, key: &str) -> Option<(&'a Value, Option<Range<usize>>)> {
        debug_assert!(
            self.known.contains(&key),
            "reader asked for undeclared key {key}"
        );
        match self.table.get(key)? {
            Item::Value(v) => Some((v, v.span())),
            _ => None,
        }
    }

    fn type_error(&self, key: &str, want: &str) -> Diagnostic {
        let span = match self.table.get(key) {
            Some(Item::Value(v)) => v.span(),
            Some(Item::Table(t)) => t.span(),
            _ => self.key_span(key),
        };
        let got = match self.table.get(key) {
            Some(Item::Value(v)) => v.type_name(),
            Some(Item::Table(_)) => "table",
            Some(Item::ArrayOfTables(_)) => "array of tables",
            _ => "nothing",
        };
        self.src.error(
            span,
            format!("`{}` must be {want}, found {got}", self.qualified(key)),
        )
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub fn string(&self, key: &str) -> Result<Option<Spanned<String>>, Diagnostic> {
        if !self.has(key) {
            return Ok(None);
        }
        match self.value(key) {
            Some((Value::String(s), span)) => Ok(Some(Spanned {
                value: s.value().clone(),
                span,
            })),
            _ => Err(self.type_error(key, "a string")),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, Diagnostic> {
        if !self.has(key) {
            return Ok(None);
        }
        match self.value(key) {
            Some((Value::Boolean(b), _)) => Ok(Some(*b.value())),
            _ => Err(self.type_error(key, "a boolean")),
        }
    }

    pub fn integer(&self, key: &str) -> Result<Option<Spanned<i64>>, Diagnostic> {
        if !self.has(key) {
            return Ok(None);
        }
        match self.value(key) {
            Some((Value::Integer(i), span)) => Ok(Some(Spanned {
                value: *i.value(),
                span,
            })),
            _ => Err(self.type_error(key, "an integer")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<Spanned<String>>, Diagnostic> {
        if !self.has(key) {
            return Ok(Vec::new());
        }
        let Some((Value::Array(arr), _)) = self.value(key) else {
            return Err(self.type_error(key, "an array of strings"));
        };
        arr.iter()
            .map(|v| match v {
                Value::String(s) => Ok(Spanned {
                    value: s.value().clone(),
                    span: v.span(),
                }),
                other => Err(self.src.error(
                    other.span(),
                    format!(
                        "`{}` must be an array of strings, found an element of type {}",
                        self.qualified(key),
                        other.type_name()
                    ),
                )),
            })
            .collect()
    }

    pub fn integers(&self, key: &str) -> Result<Vec<Spanned<i64>>, Diagnostic> {
        if !self.has(key) {
            return Ok(Vec::new());
        }
        let Some((Value::Array(arr), _)) = self.value(key) else {
            return Err(self.type_error(key, "an array of integers"));
        };
        arr.iter()
            .map(|v| match v {
                Value::Integer(i) => Ok(Spanned {
                    value: *i.value(),
                    span: v.span(),
                }),
                other => Err(self.src.error(
                    other.span(),
                    format!(
                        "`{}` must be an array of integers, found an element of type {}",
                        self.qualified(key),
                        other.type_name()
                    ),
                )),
            })
            .collect()
    }

    /// A table of string values (inline `{ A = "1" }` or a `[section]`).
    pub fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, Diagnostic> {
        let mut out = BTreeMap::new();
        match self.table.get(key) {
            None => {}
            Some(Item::Table(t)) => {
                for (k, item) in t.iter() {
                    match item.as_str() {
                        Some(s) => {
                            out.insert(k.to_string(), s.to_string());
                        }
                        None => {
                            let span = t.key(k).and_then(|k| k.span());
                            return Err(self.src.error(
                                span,
                                format!("`{}.{k}` must be a string", self.qualified(key)),
                            ));
                        }
                    }
                }
            }
            Some(Item::Value(Value::InlineTable(t))) => {
                for (k, v) in t.iter() {
                    match v.as_str() {
                        Some(s) => {
                            out.insert(k.to_string(), s.to_string());
                        }
                        None => {
                            return Err(self.src.error(
                                v.span(),
                                format!("`{}.{k}` must be a string", self.qualified(key)),
                            ));
                        }
                    }
                }
            }
            Some(_) => return Err(self.type_error(key, "a table of strings")),
        }
        Ok(out)
    }

    /// A sub-table (`[image]` or `image = { ... }`), read with its own list of known keys.
    pub fn table(
        &self,
        key: &str,
        known: &'static [&'static str],
    ) -> Result<Option<TableReader<'a>>, Diagnostic> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Item::Table(t)) => Ok(Some(TableReader::new(
                self.src,
                t,
                &self.qualified(key),
                known,
            ))),
            Some(_) => Err(self.type_error(key, "a table")),
        }
    }

    /// An array of inline tables (`files = [{ src = "...", dst = "..." }]`), or `[[files]]`.
    pub fn tables(
        &self,
        key: &str,
        known: &'static [&'static str],
    ) -> Result<Vec<OwnedTable>, Diagnostic> {
        match self.table.get(key) {
            None => Ok(Vec::new()),
            Some(Item::ArrayOfTables(arr)) => Ok(arr
                .iter()
                .map(|t| OwnedTable {
                    table: t.clone(),
                    known,
                })
                .collect()),
            Some(Item::Value(Value::Array(arr))) => arr
                .iter()
                .map(|v| match v {
                    Value::InlineTable(t) => {
                        let mut table = t.clone().into_table();
                        table.set_implicit(false);
                        Ok(OwnedTable { table, known })
                    }
                    other => Err(self.src.error(
                        other.span(),
                        format!("`{}` must be an array of tables", self.qualified(key)),
                    )),
                })
                .collect(),
            Some(_) => Err(self.type_error(key, "an array of tables")),
        }
    }

    pub fn source(&self) -> &'a Source {
        self.src
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

/// An element of an array of tables; spans survive `into_table` for inline tables.
pub struct OwnedTable {
    pub table: Table,
    pub known: &'static [&'static str],
}

impl OwnedTable {
    pub fn reader<'a>(&'a self, src: &'a Source, path: &str) -> TableReader<'a> {
        TableReader::new(src, &self.table, path, self.known)
    }
}
