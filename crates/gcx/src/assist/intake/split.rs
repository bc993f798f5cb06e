//! Splitting an input into trigger texts as it is read, holding at most one trigger's text
//! (and, for an input no larger than that, the whole input) in memory.
//!
//! The shape is told by the first non-blank byte: `[` starts a JSON array, split into its
//! elements by a string- and bracket-aware scan; anything else is JSON Lines, except that
//! an input of at most [`MAX_TRIGGER_TEXT`] bytes starting with `{` that parses as one JSON
//! value is a single (pretty-printed) object. A trigger text (a line, an array element)
//! longer than [`MAX_TRIGGER_TEXT`] ends the reading: it is reported as one piece at the
//! line where it starts, and nothing after it is read, so an endless input (`/dev/zero`)
//! costs one trigger's worth of memory and time.

use std::io::{BufRead, Read};

use gcx_protocol::assist::MAX_MESSAGE_BYTES;
use serde_json::Value;

use super::InputFormat;

/// The longest text one trigger may take in an input: four times the largest `send`
/// message the engine accepts (64 KiB, compact), which leaves room for indentation and
/// escapes. Longer text cannot be a trigger worth reading on.
pub const MAX_TRIGGER_TEXT: usize = 4 * MAX_MESSAGE_BYTES;

/// One trigger's text (or its parsed value, or why it has none) and where it starts.
pub(super) struct Piece {
    /// 1-based line on which the trigger starts.
    pub line: usize,
    pub content: Content,
}

pub(super) enum Content {
    Text(Vec<u8>),
    Parsed(Value),
    /// The input's structure is broken here; the message says how.
    Broken(String),
    /// A trigger's text is longer than [`MAX_TRIGGER_TEXT`]; reading stopped here.
    TooLong,
}

/// Reads `reader` to its end (or to a [`Content::TooLong`] piece), handing each piece to
/// `on_piece` as soon as it is complete.
pub(super) fn split(
    mut reader: impl BufRead,
    on_piece: &mut dyn FnMut(Piece),
) -> std::io::Result<InputFormat> {
    // The head: enough to tell the shape, and the whole input when it is small.
    let mut head = Vec::new();
    (&mut reader)
        .take(MAX_TRIGGER_TEXT as u64 + 1)
        .read_to_end(&mut head)?;
    let whole = head.len() <= MAX_TRIGGER_TEXT;
    let bom = if head.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let first = head[bom..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|p| bom + p);
    match first.map(|at| head[at]) {
        None if whole => Ok(InputFormat::Empty),
        Some(b'[') => {
            let mut array = ArraySplitter::default();
            let rest = std::io::Cursor::new(&head[bom..]).chain(reader);
            array.run(rest, on_piece)?;
            Ok(InputFormat::JsonArray)
        }
        Some(b'{') if whole => match serde_json::from_slice::<Value>(&head[bom..]) {
            Ok(value) => {
                on_piece(Piece {
                    line: line_of(&head, first.unwrap_or(0)),
                    content: Content::Parsed(value),
                });
                Ok(InputFormat::SingleObject)
            }
            Err(_) => {
                lines(std::io::Cursor::new(&head[bom..]), on_piece)?;
                Ok(InputFormat::JsonLines)
            }
        },
        _ => {
            lines(std::io::Cursor::new(&head[bom..]).chain(reader), on_piece)?;
            Ok(InputFormat::JsonLines)
        }
    }
}

/// 1-based line of byte `at`.
fn line_of(bytes: &[u8], at: usize) -> usize {
    1 + bytes[..at].iter().filter(|b| **b == b'\n').count()
}

/// JSON Lines: one trigger per line, blank lines skipped.
fn lines(mut reader: impl BufRead, on_piece: &mut dyn FnMut(Piece)) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_TRIGGER_TEXT as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        if buf.last() != Some(&b'\n') && buf.len() > MAX_TRIGGER_TEXT {
            on_piece(Piece {
                line,
                content: Content::TooLong,
            });
            return Ok(());
        }
        let text = buf.trim_ascii();
        if !text.is_empty() {
            on_piece(Piece {
                line,
                content: Content::Text(text.to_vec()),
            });
        }
    }
}

/// A JSON array's elements, split by tracking strings and nesting as the bytes arrive,
/// so one malformed element does not hide the others.
#[derive(Default)]
struct ArraySplitter {
    /// Line of the byte being looked at (1-based).
    line: usize,
    /// Line of the opening `[`.
    open_line: usize,
    place: Place,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The current element's text, and the line it starts on.
    element: Option<(usize, Vec<u8>)>,
    /// Elements (and empty ones) reported so far.
    pieces: usize,
}

/// Where the scan is, relative to the array's brackets.
#[derive(Default, PartialEq, Eq)]
enum Place {
    #[default]
    BeforeOpen,
    Inside,
    AfterClose,
}

/// Whether the scan goes on after a byte.
#[derive(PartialEq, Eq)]
enum Step {
    Go,
    /// Nothing after this byte matters (text after the array, or an element too long).
    Stop,
}

impl ArraySplitter {
    fn run(
        &mut self,
        mut reader: impl BufRead,
        on_piece: &mut dyn FnMut(Piece),
    ) -> std::io::Result<()> {
        self.line = 1;
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len();
            let mut step = Step::Go;
            for &b in chunk {
                step = self.byte(b, on_piece);
                if step == Step::Stop {
                    break;
                }
                if b == b'\n' {
                    self.line += 1;
                }
            }
            reader.consume(len);
            if step == Step::Stop {
                return Ok(());
            }
        }
        if self.place != Place::AfterClose {
            self.emit_element(on_piece);
            on_piece(Piece {
                line: self.open_line,
                content: Content::Broken(format!(
                    "the JSON array opened on line {} is not closed (a missing `]` or an unterminated string)",
                    self.open_line
                )),
            });
        }
        Ok(())
    }

    fn byte(&mut self, b: u8, on_piece: &mut dyn FnMut(Piece)) -> Step {
        match self.place {
            Place::BeforeOpen => {
                // Whitespace (and a BOM, skipped by the caller), then the `[`.
                if b == b'[' {
                    self.place = Place::Inside;
                    self.open_line = self.line;
                }
                return Step::Go;
            }
            Place::AfterClose => {
                if b.is_ascii_whitespace() {
                    return Step::Go;
                }
                on_piece(Piece {
                    line: self.line,
                    content: Content::Broken(
                        "text after the closing `]` of the trigger array; expected nothing more"
                            .into(),
                    ),
                });
                return Step::Stop;
            }
            Place::Inside => {}
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return self.push(b, on_piece);
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.push(b, on_piece)
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.push(b, on_piece)
            }
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                self.push(b, on_piece)
            }
            b']' => {
                if self.element.is_some() {
                    self.emit_element(on_piece);
                } else if self.pieces > 0 {
                    self.empty_here(on_piece);
                }
                self.place = Place::AfterClose;
                Step::Go
            }
            b',' if self.depth == 0 => {
                if self.element.is_some() {
                    self.emit_element(on_piece);
                } else {
                    self.empty_here(on_piece);
                }
                Step::Go
            }
            b if b.is_ascii_whitespace() && self.element.is_none() => Step::Go,
            _ => self.push(b, on_piece),
        }
    }

    /// Adds `b` to the current element (starting one here if none is open).
    fn push(&mut self, b: u8, on_piece: &mut dyn FnMut(Piece)) -> Step {
        let line = self.line;
        let (start, text) = self.element.get_or_insert_with(|| (line, Vec::new()));
        if text.len() >= MAX_TRIGGER_TEXT {
            on_piece(Piece {
                line: *start,
                content: Content::TooLong,
            });
            return Step::Stop;
        }
        text.push(b);
        Step::Go
    }

    fn emit_element(&mut self, on_piece: &mut dyn FnMut(Piece)) {
        if let Some((line, mut text)) = self.element.take() {
            let end = text.trim_ascii_end().len();
            text.truncate(end);
            self.pieces += 1;
            on_piece(Piece {
                line,
                content: Content::Text(text),
            });
        }
    }

    /// An empty element (`[1,,2]`, `[1,]`) is reported where its comma (or `]`) is.
    fn empty_here(&mut self, on_piece: &mut dyn FnMut(Piece)) {
        self.pieces += 1;
        on_piece(Piece {
            line: self.line,
            content: Content::Broken(
                "an empty element (two commas, or a comma before `]`); expected a trigger object"
                    .into(),
            ),
        });
    }
}
