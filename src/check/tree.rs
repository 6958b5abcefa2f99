//! The parsed TOML reduced to what validation needs: values with the line they sit on, tables
//! as ordered entries with the line of each key. Inline and standard tables look alike here.

use toml_edit::{Item, Value};

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

fn line_of(span: Option<std::ops::Range<usize>>, fallback: usize, lines: &Lines) -> usize {
    span.map_or(fallback, |s| lines.line(s.start))
}

pub(crate) fn table(t: &toml_edit::Table, fallback: usize, lines: &Lines) -> Table {
    let pairs = t.iter().filter_map(|(k, _)| t.get_key_value(k));
    located_table(t.span(), fallback, lines, pairs)
}

fn inline_table(t: &toml_edit::InlineTable, fallback: usize, lines: &Lines) -> Table {
    let pairs = t.iter().filter_map(|(k, _)| t.get_key_value(k));
    located_table(t.span(), fallback, lines, pairs)
}

/// A table of either kind: its line, and each key with its line and its value's node.
fn located_table<'a>(
    span: Option<std::ops::Range<usize>>,
    fallback: usize,
    lines: &Lines,
    pairs: impl Iterator<Item = (&'a toml_edit::Key, &'a Item)>,
) -> Table {
    let line = line_of(span, fallback, lines);
    let entries = pairs
        .filter_map(|(key, item)| {
            let key_line = line_of(key.span(), line, lines);
            item_node(item, key_line, lines).map(|value| Entry {
                key: key.get().to_string(),
                line: key_line,
                value,
            })
        })
        .collect();
    Table { line, entries }
}

fn item_node(item: &Item, fallback: usize, lines: &Lines) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_node(v, fallback, lines)),
        Item::Table(t) => {
            let t = table(t, fallback, lines);
            Some(Node {
                line: t.line,
                kind: Kind::Table(t),
            })
        }
        Item::ArrayOfTables(a) => {
            let items = a
                .iter()
                .map(|t| {
                    let t = table(t, fallback, lines);
                    Node {
                        line: t.line,
                        kind: Kind::Table(t),
                    }
                })
                .collect();
            Some(Node {
                line: fallback,
                kind: Kind::Array(items),
            })
        }
    }
}

fn value_node(v: &Value, fallback: usize, lines: &Lines) -> Node {
    let line = line_of(v.span(), fallback, lines);
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(f) => Kind::Float(*f.value()),
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(a) => Kind::Array(a.iter().map(|v| value_node(v, line, lines)).collect()),
        Value::InlineTable(t) => Kind::Table(inline_table(t, line, lines)),
    };
    Node { line, kind }
}
