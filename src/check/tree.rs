//! The parsed TOML reduced to what validation needs: values with the line they sit on, tables
//! as ordered entries with the line of each key. Inline and standard tables look alike here.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Byte offset -> 1-based line number.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Table),
}

impl Kind {
    /// "a string", "an integer", ... for "must be X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Bool(_) => "true/false",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

pub(crate) struct Entry {
    pub key: String,
    /// Line of the key itself (the offending key in messages).
    pub line: usize,
    pub value: Node,
}

pub(crate) struct Table {
    /// Line of the header (`[x]`, `[[x]]`), the `{` of an inline table, or the key.
    pub line: usize,
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The document's root table (line 1) from the parsed TOML.
pub(crate) fn document(root: &DeTable<'_>, lines: &Lines) -> Table {
    table_at(root, 1, 0, lines)
}

/// A table of either kind (`[x]`, `[[x]]` element, inline `{...}`): its line, and each key with
/// its line and its value's node, in document order. `offset` is where the parsed text starts
/// in the document (not 0 for a section parsed alone, see [`super::sections`]).
pub(crate) fn table_at(t: &DeTable<'_>, line: usize, offset: usize, lines: &Lines) -> Table {
    let entries = t
        .iter()
        .map(|(key, value)| {
            let key_line = lines.line(offset + key.span().start);
            Entry {
                key: key.get_ref().to_string(),
                line: key_line,
                value: node(value, key_line, offset, lines),
            }
        })
        .collect();
    Table { line, entries }
}

/// A value and the line it starts on. Every parsed value carries its span; `fallback` (the
/// key's line) is only for an empty span.
fn node(v: &Spanned<DeValue<'_>>, fallback: usize, offset: usize, lines: &Lines) -> Node {
    let span = v.span();
    let line = if span.is_empty() {
        fallback
    } else {
        lines.line(offset + span.start)
    };
    let kind = match v.get_ref() {
        DeValue::String(s) => Kind::Str(s.to_string()),
        // The parser has checked the digits; one out of i64's range is what `Int` cannot hold,
        // and reads as a number so that the checks name the key ("must be ... found a number").
        DeValue::Integer(i) => {
            i64::from_str_radix(i.as_str(), i.radix()).map_or(Kind::Float(f64::NAN), Kind::Int)
        }
        // Rust reads TOML's `inf`, `-inf` and `nan` too; the parser has checked the rest.
        DeValue::Float(f) => Kind::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Kind::Bool(*b),
        DeValue::Datetime(_) => Kind::Datetime,
        DeValue::Array(a) => Kind::Array(a.iter().map(|v| node(v, line, offset, lines)).collect()),
        DeValue::Table(t) => Kind::Table(table_at(t, line, offset, lines)),
    };
    Node { line, kind }
}
