//! A large inventory parsed a slot at a time.
//!
//! The TOML parser first turns the whole document into a list of tokens (about 24 bytes for
//! each word, `=`, space and line break), then builds its tables from them: at 100,000 slots that
//! list alone is about 100 MiB, more than the rest of `plan` together (docs/src/benchmarks.md,
//! "Scale (issue 19), measured"). Most of such an inventory is a run of `[[slots]]` sections at
//! its end, and each section's body means the same parsed alone as in the document: its keys
//! belong to that one new array element. So when the document has that shape, the part before
//! the first `[[slots]]` and each section's body are parsed one after another, and only the
//! small result of each is kept.
//!
//! Anything else (a header other than `[[slots]]` after the first one, such as
//! `[[slots.grants]]`, a `slots` key before it, brackets that do not balance) returns `None`, and
//! the caller parses the whole document as one: the errors and lines are then the parser's own.

use super::tree::{Entry, Kind, Lines, Node, Table, table_at};
use toml_parser::lexer::TokenKind;

/// Where the sections are: the end of the part before the first `[[slots]]` header, and for
/// each header its start and where its body starts.
struct Layout {
    prefix_end: usize,
    headers: Vec<(usize, usize)>,
}

/// The document's root table, parsed section by section, or `None` when the document does not
/// have the shape this needs (see the module comment) or does not parse.
pub(crate) fn document(text: &str, lines: &Lines) -> Option<Table> {
    let layout = layout(text)?;
    let prefix = toml::de::DeTable::parse(&text[..layout.prefix_end]).ok()?;
    let mut root = table_at(prefix.get_ref(), 1, 0, lines);
    drop(prefix);
    if root.get("slots").is_some() {
        return None;
    }
    let mut slots = Vec::with_capacity(layout.headers.len());
    for (i, &(header, body)) in layout.headers.iter().enumerate() {
        let end = layout
            .headers
            .get(i + 1)
            .map_or(text.len(), |&(next, _)| next);
        let parsed = toml::de::DeTable::parse(&text[body..end]).ok()?;
        let line = lines.line(header);
        slots.push(Node {
            line,
            kind: Kind::Table(table_at(parsed.get_ref(), line, body, lines)),
        });
    }
    let line = lines.line(layout.headers[0].0);
    root.entries.push(Entry {
        key: "slots".to_string(),
        line,
        value: Node {
            line,
            kind: Kind::Array(slots),
        },
    });
    Some(root)
}

/// Finds the top-level headers from the tokens (strings and comments are single tokens, so a
/// `[` inside one is never taken for a header). A header is a `[` that starts a line outside any
/// value. `None` unless every header from the first `[[slots]]` on is exactly `[[slots]]`.
fn layout(text: &str) -> Option<Layout> {
    let source = toml_parser::Source::new(text);
    let mut tokens = source.lex();
    // Brackets and braces open inside a value (an array or inline table after `=`).
    let mut depth: usize = 0;
    let mut line_start = true;
    let mut prefix_end = None;
    let mut headers = Vec::new();
    while let Some(token) = tokens.next() {
        let kind = token.kind();
        match kind {
            TokenKind::Eof => break,
            TokenKind::Newline => {
                // A line break inside a value (a multi-line array) starts no header.
                line_start = depth == 0;
                continue;
            }
            TokenKind::Whitespace | TokenKind::Comment => continue,
            _ => {}
        }
        if line_start && kind == TokenKind::LeftSquareBracket {
            let start = token.span().start();
            let mut raw = String::from("[");
            let mut end = token.span().end();
            for t in tokens.by_ref() {
                end = t.span().end();
                match t.kind() {
                    TokenKind::Newline | TokenKind::Eof => return None,
                    TokenKind::Whitespace => continue,
                    TokenKind::RightSquareBracket
                        if raw.ends_with(']') || !raw.starts_with("[[") =>
                    {
                        raw.push(']');
                        break;
                    }
                    _ => raw.push_str(&text[t.span().start()..t.span().end()]),
                }
            }
            let is_slots = raw == "[[slots]]";
            match (is_slots, prefix_end) {
                (true, None) => {
                    prefix_end = Some(start);
                    headers.push((start, end));
                }
                (true, Some(_)) => headers.push((start, end)),
                (false, None) => {}
                // Another header after the slots began: its meaning depends on what came before.
                (false, Some(_)) => return None,
            }
            line_start = false;
            continue;
        }
        line_start = false;
        match kind {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.checked_sub(1)?;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    Some(Layout {
        prefix_end: prefix_end?,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tree::document as whole;

    /// The tree as text, lines included: what the checks see.
    fn show(t: &Table) -> String {
        fn node(n: &Node, out: &mut String) {
            match &n.kind {
                Kind::Table(t) => table(t, out),
                Kind::Array(items) => {
                    out.push('[');
                    items.iter().for_each(|i| node(i, out));
                    out.push(']');
                }
                Kind::Str(s) => out.push_str(&format!("{s:?}")),
                Kind::Int(i) => out.push_str(&i.to_string()),
                Kind::Float(f) => out.push_str(&f.to_string()),
                Kind::Bool(b) => out.push_str(&b.to_string()),
                Kind::Datetime => out.push_str("dt"),
            }
            out.push_str(&format!("@{} ", n.line));
        }
        fn table(t: &Table, out: &mut String) {
            out.push_str(&format!("{{@{} ", t.line));
            for e in &t.entries {
                out.push_str(&format!("{}@{}=", e.key, e.line));
                node(&e.value, out);
            }
            out.push('}');
        }
        let mut out = String::new();
        table(t, &mut out);
        out
    }

    fn both(text: &str) -> (Option<String>, String) {
        let lines = Lines::new(text);
        let doc = toml::de::DeTable::parse(text).unwrap();
        (
            document(text, &lines).map(|t| show(&t)),
            show(&whole(doc.get_ref(), &lines)),
        )
    }

    #[test]
    fn sections_give_the_tree_of_the_whole_document() {
        let text = "# inventory\n[settings]\nconcurrency = 4\nx = [\n[1, 2],\n]\n\n[[slots]]\nname = \"a\" # [[x]]\nbootstrap = { client_id = { env = \"A\" } }\ns = \"\"\"\n[[not]]\n\"\"\"\n\n[[ slots ]]\nname = \"b\"\ntags.team = \"t\"\n";
        let (split, whole) = both(text);
        assert_eq!(split.as_deref(), Some(whole.as_str()));
    }

    #[test]
    fn other_shapes_are_parsed_whole() {
        for text in [
            // A sub-table of the last slot: its meaning depends on the section before.
            "[[slots]]\nname = \"a\"\n[[slots.grants]]\nrole = \"r\"\n",
            // A table after the slots.
            "[[slots]]\nname = \"a\"\n[providers.p]\ntype = \"taegis\"\n",
            // `slots` already defined before the first header.
            "slots = []\n[[slots]]\nname = \"a\"\n",
            // No slots at all.
            "[settings]\nconcurrency = 4\n",
            // Brackets that do not balance.
            "[[slots]]\nname = [\"a\"\n",
        ] {
            let lines = Lines::new(text);
            assert!(document(text, &lines).is_none(), "{text}");
        }
    }
}
