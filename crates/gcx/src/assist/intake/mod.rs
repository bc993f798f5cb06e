//! Intake: trigger files and stdin -> validated triggers, one [`Item`] per trigger with
//! the line it starts on, handed over as it is read.
//!
//! Accepted shapes, told apart by the first non-blank character (see [`split`]):
//! - `[`: a JSON array of triggers. Elements are split by a string- and bracket-aware
//!   scan before each is parsed, so a broken element costs only itself.
//! - `{`: one JSON object (pretty-printed over several lines is fine) or, when the whole
//!   text is not one object, JSON Lines.
//! - anything else: JSON Lines (one trigger per line; blank lines are skipped), and the
//!   offending line is an item error.
//!
//! Each trigger is checked exactly as the engine will check it: the `send` frame it
//! would travel in must fit in 64 KiB (else one `size` violation), then the catalogue's
//! rules. Nothing valid is dropped because a neighbour is invalid. Memory is bounded
//! whatever the input's size: at most one trigger's text ([`MAX_TRIGGER_TEXT`]) is held
//! at a time, and a longer one ends the reading with a `size` violation at its line.

mod split;

use std::io::BufRead;
use std::path::{Path, PathBuf};

use gcx_protocol::assist::MAX_MESSAGE_BYTES;

use gcx_protocol::catalogue::CatalogueError;
use gcx_protocol::validate::validate_trigger;
use gcx_protocol::{ActionTriggerPayload, Catalogue, Violation, ViolationCode};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

pub use split::MAX_TRIGGER_TEXT;
use split::{Content, Piece};

/// How intake treats what it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeOptions {
    /// Give a trigger without a `correlationId` key a fresh UUID v4 instead of reporting
    /// it as `required`. (A present but invalid id is never replaced.)
    pub assign_ids: bool,
}

/// The shape the input turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    JsonLines,
    JsonArray,
    SingleObject,
    /// Nothing but whitespace.
    Empty,
}

/// One trigger read from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based line on which the trigger starts, so messages can say `file:line`.
    pub line: usize,
    /// 0-based position among the input's triggers (blank lines not counted).
    pub index: usize,
    /// The validated payload, or every violation (a non-JSON item is one `type`
    /// violation at path `""` whose message says why it is not JSON).
    pub outcome: Result<ActionTriggerPayload, Vec<Violation>>,
    /// Set when the correlationId was generated here (see [`IntakeOptions::assign_ids`]).
    pub assigned_id: Option<Uuid>,
    /// The trigger's text was longer than [`MAX_TRIGGER_TEXT`], so nothing after it was
    /// read: the input ends here for whoever consumes it.
    pub too_long: bool,
}

impl Item {
    /// The payload, when the item is valid.
    pub fn payload(&self) -> Option<&ActionTriggerPayload> {
        self.outcome.as_ref().ok()
    }

    /// The violations (empty when the item is valid).
    pub fn violations(&self) -> &[Violation] {
        match &self.outcome {
            Ok(_) => &[],
            Err(v) => v,
        }
    }
}

/// What reading one input found; the items themselves went to the caller one by one.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeSummary {
    /// The path as given, or `-` for stdin: the prefix of `file:line` messages.
    pub source: String,
    pub format: InputFormat,
    /// Triggers read (valid and invalid).
    pub items: usize,
    /// How many of them are invalid.
    pub invalid: usize,
    /// The line of a trigger text longer than [`MAX_TRIGGER_TEXT`], where reading
    /// stopped: what follows it was not read.
    pub stopped_at: Option<usize>,
}

impl IntakeSummary {
    /// How many triggers are valid.
    pub fn valid(&self) -> usize {
        self.items - self.invalid
    }
}

/// Why an input or a catalogue could not be read at all.
#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("trigger file {} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read trigger file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read triggers from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("action catalogue {} does not exist", path.display())]
    CatalogueNotFound { path: PathBuf },
    #[error("cannot read action catalogue {}: {source}", path.display())]
    CatalogueRead {
        path: PathBuf,
        source: crate::bounded_read::BoundedReadError,
    },
    #[error("action catalogue {}: {source}", path.display())]
    Catalogue {
        path: PathBuf,
        source: CatalogueError,
    },
}

/// The catalogue at `path`, or the built-in one when `path` is `None`
/// (`dispatch.catalogue_path`).
pub fn load_catalogue(path: Option<&Path>) -> Result<Catalogue, IntakeError> {
    let Some(path) = path else {
        return Ok(Catalogue::builtin());
    };
    let text = crate::bounded_read::read_to_string(path, crate::bounded_read::MAX_SETTINGS_FILE)
        .map_err(|source| {
            if source.is_not_found() {
                IntakeError::CatalogueNotFound {
                    path: path.to_owned(),
                }
            } else {
                IntakeError::CatalogueRead {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    Catalogue::from_toml_str(&text).map_err(|source| IntakeError::Catalogue {
        path: path.to_owned(),
        source,
    })
}

/// Reads and validates the triggers in `source` (a file path, or `-` for stdin), handing
/// each [`Item`] to `on_item` as soon as it is read.
pub fn read_triggers(
    source: &str,
    catalogue: &Catalogue,
    options: IntakeOptions,
    on_item: &mut dyn FnMut(Item),
) -> Result<IntakeSummary, IntakeError> {
    let mut summary = IntakeSummary {
        source: source.to_owned(),
        format: InputFormat::Empty,
        items: 0,
        invalid: 0,
        stopped_at: None,
    };
    let mut count = |item: Item| {
        summary.items += 1;
        if item.outcome.is_err() {
            summary.invalid += 1;
        }
        if item.too_long {
            summary.stopped_at = Some(item.line);
        }
        on_item(item);
    };
    let format = if source == "-" {
        scan_triggers(std::io::stdin().lock(), catalogue, options, &mut count)
            .map_err(IntakeError::Stdin)?
    } else {
        let path = Path::new(source);
        let read_error = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IntakeError::NotFound {
                    path: path.to_owned(),
                }
            } else {
                IntakeError::Read {
                    path: path.to_owned(),
                    source: e,
                }
            }
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        scan_triggers(
            std::io::BufReader::with_capacity(64 * 1024, file),
            catalogue,
            options,
            &mut count,
        )
        .map_err(read_error)?
    };
    summary.format = format;
    Ok(summary)
}

/// Splits what `reader` yields into triggers and validates each, handing each [`Item`] to
/// `on_item` as soon as it is complete; at most one trigger's text is held at a time.
pub fn scan_triggers(
    reader: impl BufRead,
    catalogue: &Catalogue,
    options: IntakeOptions,
    on_item: &mut dyn FnMut(Item),
) -> std::io::Result<InputFormat> {
    let mut index = 0;
    split::split(reader, &mut |piece| {
        on_item(check_piece(index, piece, catalogue, options));
        index += 1;
    })
}

/// Splits `bytes` into triggers and validates each (pure: no I/O).
pub fn parse_triggers(
    bytes: &[u8],
    catalogue: &Catalogue,
    options: IntakeOptions,
) -> (InputFormat, Vec<Item>) {
    let mut items = Vec::new();
    let format = scan_triggers(bytes, catalogue, options, &mut |item| items.push(item))
        .unwrap_or_else(|_| unreachable!("reading a byte slice cannot fail"));
    (format, items)
}

/// `{"type":"send","payload":` + `}`: what a payload's frame adds to it.
const SEND_FRAME_OVERHEAD: usize = 26;

fn check_piece(index: usize, piece: Piece, catalogue: &Catalogue, options: IntakeOptions) -> Item {
    let item = |outcome, assigned_id| Item {
        line: piece.line,
        index,
        outcome,
        assigned_id,
        too_long: false,
    };
    let not_json = |message: String| {
        Err(vec![Violation {
            path: String::new(),
            code: ViolationCode::Type,
            message,
        }])
    };
    let mut value = match piece.content {
        Content::Parsed(v) => v,
        Content::Broken(message) => return item(not_json(message), None),
        Content::TooLong => {
            return Item {
                too_long: true,
                ..item(
                    Err(vec![Violation {
                        path: String::new(),
                        code: ViolationCode::Size,
                        message: format!(
                            "a trigger's text runs past {MAX_TRIGGER_TEXT} bytes (256 KiB) without ending (no newline, or an array element that does not close); at most {MAX_TRIGGER_TEXT} bytes are read per trigger, and nothing after this one was read"
                        ),
                    }]),
                    None,
                )
            };
        }
        Content::Text(text) => match serde_json::from_slice::<Value>(&text) {
            Ok(v) => v,
            Err(e) => {
                let at = if e.line() > 1 {
                    format!("line {}, column {}", piece.line + e.line() - 1, e.column())
                } else {
                    format!("column {} of the trigger", e.column())
                };
                let message = format!(
                    "not JSON ({}, at {at}); expected one trigger object",
                    message_without_position(&e)
                );
                return item(not_json(message), None);
            }
        },
    };

    let mut assigned_id = None;
    if options.assign_ids
        && let Some(obj) = value.as_object_mut()
        && !obj.contains_key("correlationId")
    {
        let id = Uuid::new_v4();
        obj.insert("correlationId".into(), Value::String(id.to_string()));
        assigned_id = Some(id);
    }

    // The size the engine will measure: the compact `send` frame around this payload.
    let size = serde_json::to_vec(&value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        .saturating_add(SEND_FRAME_OVERHEAD);
    if size > MAX_MESSAGE_BYTES {
        return item(
            Err(vec![Violation {
                path: String::new(),
                code: ViolationCode::Size,
                message: format!(
                    "the send message would be {size} bytes; at most {MAX_MESSAGE_BYTES} bytes (64 KiB) are accepted"
                ),
            }]),
            assigned_id,
        );
    }
    item(validate_trigger(&value, catalogue), assigned_id)
}

/// serde_json's message without its " at line L column C" tail (we say where ourselves).
fn message_without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let tail = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&tail).unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const AGENT: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";

    fn trigger(corr: &str) -> String {
        format!(
            r#"{{"actionType":"knowledge_search","parameterMatrix":{{"query":"refunds"}},"executionContext":{{"agentId":"{AGENT}","sessionId":"s1","interactionType":"voice"}},"correlationId":"{corr}"}}"#
        )
    }

    fn id(n: u32) -> String {
        format!("00000000-0000-4000-8000-{n:012}")
    }

    fn parse(text: &str) -> (InputFormat, Vec<Item>) {
        parse_triggers(
            text.as_bytes(),
            &Catalogue::builtin(),
            IntakeOptions::default(),
        )
    }

    /// (line, valid?, first violation code) per item.
    fn summary(items: &[Item]) -> Vec<(usize, Option<String>)> {
        items
            .iter()
            .map(|i| (i.line, i.violations().first().map(|v| v.code.to_string())))
            .collect()
    }

    #[test]
    fn json_lines_with_a_bad_neighbour() {
        let text = format!(
            "{}\n\nnot json at all\n{}\n{{\"actionType\":\"knowledge_search\"}}\n",
            trigger(&id(1)),
            trigger(&id(2))
        );
        let (format, items) = parse(&text);
        assert_eq!(format, InputFormat::JsonLines);
        assert_eq!(
            summary(&items),
            [
                (1, None),
                (3, Some("type".into())),
                (4, None),
                (5, Some("required".into()))
            ]
        );
        assert!(items[1].violations()[0].message.starts_with("not JSON"));
        assert_eq!(items[2].index, 2);
        assert_eq!(
            items[2].payload().unwrap().correlation_id.to_string(),
            id(2)
        );
    }

    #[test]
    fn crlf_and_bom_are_fine() {
        let text = format!("\u{feff}{}\r\n{}\r\n", trigger(&id(1)), trigger(&id(2)));
        let (_, items) = parse(&text);
        assert_eq!(summary(&items), [(1, None), (2, None)]);
    }

    #[test]
    fn a_pretty_array_reports_element_lines() {
        let text = format!(
            "[\n  {},\n  {{\"actionType\": \"knowledge_search\",\n   \"oops\": }},\n\n  {}\n]\n",
            trigger(&id(1)),
            trigger(&id(3))
        );
        let (format, items) = parse(&text);
        assert_eq!(format, InputFormat::JsonArray);
        assert_eq!(
            summary(&items),
            [(2, None), (3, Some("type".into())), (6, None)]
        );
        let m = &items[1].violations()[0].message;
        assert!(m.contains("line 4"), "{m}");
    }

    #[test]
    fn brackets_and_commas_inside_strings_do_not_split() {
        let t = trigger(&id(1)).replace("refunds", "a, [b] {c} \\\"d\\\" ]");
        let (_, items) = parse(&format!("[{t}]"));
        assert_eq!(summary(&items), [(1, None)]);
        assert_eq!(
            items[0].payload().unwrap().parameter_matrix["query"],
            "a, [b] {c} \"d\" ]"
        );
    }

    #[test]
    fn broken_arrays() {
        let (_, items) = parse(&format!("[{},,{}]", trigger(&id(1)), trigger(&id(2))));
        assert_eq!(
            summary(&items),
            [(1, None), (1, Some("type".into())), (1, None)]
        );
        let (_, items) = parse(&format!("[{},\n{}", trigger(&id(1)), trigger(&id(2))));
        assert_eq!(
            summary(&items),
            [(1, None), (2, None), (1, Some("type".into()))]
        );
        assert!(items[2].violations()[0].message.contains("not closed"));
        let (_, items) = parse(&format!("[{}]\nextra", trigger(&id(1))));
        assert_eq!(summary(&items), [(1, None), (2, Some("type".into()))]);
        let (_, items) = parse("[]");
        assert!(items.is_empty());
        let (_, items) = parse("[5, null]");
        assert_eq!(
            summary(&items),
            [(1, Some("type".into())), (1, Some("type".into()))]
        );
    }

    #[test]
    fn one_pretty_object() {
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(&trigger(&id(1))).unwrap())
                .unwrap();
        let (format, items) = parse(&format!("\n\n{pretty}\n"));
        assert_eq!(format, InputFormat::SingleObject);
        assert_eq!(summary(&items), [(3, None)]);
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse(" \n\t\n"), (InputFormat::Empty, Vec::new()));
    }

    #[test]
    fn assign_ids_only_when_missing() {
        let mut without: Value = serde_json::from_str(&trigger(&id(1))).unwrap();
        without.as_object_mut().unwrap().remove("correlationId");
        let text = format!("{without}\n{}\n", trigger("bad-id"));
        let opts = IntakeOptions { assign_ids: true };
        let (_, items) = parse_triggers(text.as_bytes(), &Catalogue::builtin(), opts);
        let assigned = items[0].assigned_id.unwrap();
        assert_eq!(assigned.get_version_num(), 4);
        assert_eq!(items[0].payload().unwrap().correlation_id, assigned);
        assert_eq!(items[1].assigned_id, None);
        assert_eq!(items[1].violations()[0].code, ViolationCode::Format);
        // Without the option a missing id stays a `required` violation.
        let (_, items) = parse(&without.to_string());
        assert_eq!(items[0].violations()[0].path, "/correlationId");
        assert_eq!(items[0].violations()[0].code, ViolationCode::Required);
    }

    #[test]
    fn oversized_trigger_is_one_size_violation() {
        let big = trigger(&id(1)).replace("refunds", &"q".repeat(70_000));
        let (_, items) = parse(&format!("{big}\n{}\n", trigger(&id(2))));
        assert_eq!(summary(&items), [(1, Some("size".into())), (2, None)]);
        assert_eq!(items[0].violations().len(), 1);
    }

    #[test]
    fn invalid_utf8_costs_one_line() {
        let mut bytes = trigger(&id(1)).into_bytes();
        bytes.extend_from_slice(b"\n{\"a\":\"\xff\"}\n");
        bytes.extend_from_slice(trigger(&id(2)).as_bytes());
        let (_, items) = parse_triggers(&bytes, &Catalogue::builtin(), IntakeOptions::default());
        assert_eq!(
            summary(&items),
            [(1, None), (2, Some("type".into())), (3, None)]
        );
    }

    #[test]
    fn an_endless_line_stops_the_reading_at_line_1() {
        let mut items = Vec::new();
        let format = scan_triggers(
            std::io::BufReader::new(std::io::repeat(0)),
            &Catalogue::builtin(),
            IntakeOptions::default(),
            &mut |i| items.push(i),
        )
        .unwrap();
        assert_eq!(format, InputFormat::JsonLines);
        assert_eq!(summary(&items), [(1, Some("size".into()))]);
        assert!(items[0].too_long);
        assert!(items[0].violations()[0].message.contains("262144 bytes"));
    }

    #[test]
    fn an_endless_array_element_stops_where_it_starts() {
        let head = format!("[\n{},\n{{\"query\": \"", trigger(&id(1)));
        let mut items = Vec::new();
        scan_triggers(
            std::io::BufReader::new(head.as_bytes().chain(std::io::repeat(b'x'))),
            &Catalogue::builtin(),
            IntakeOptions::default(),
            &mut |i| items.push(i),
        )
        .unwrap();
        assert_eq!(summary(&items), [(2, None), (3, Some("size".into()))]);
        assert!(items[1].too_long);
    }

    #[test]
    fn a_long_line_within_the_limit_is_one_size_violation_and_reading_goes_on() {
        let long = format!("{{\"q\": \"{}\"}}", "x".repeat(MAX_TRIGGER_TEXT - 10));
        let text = format!("{long}\n{}\n", trigger(&id(2)));
        let (_, items) = parse(&text);
        assert_eq!(summary(&items), [(1, Some("size".into())), (2, None)]);
        let over = format!(
            "{}\n{}\n",
            "x".repeat(MAX_TRIGGER_TEXT + 1),
            trigger(&id(2))
        );
        let (_, items) = parse(&over);
        assert_eq!(summary(&items), [(1, Some("size".into()))]);
    }

    #[test]
    fn inputs_larger_than_one_trigger_are_split_alike() {
        // Past MAX_TRIGGER_TEXT the input is streamed: the same items, line for line.
        let n = MAX_TRIGGER_TEXT / 200 + 50;
        let lines: Vec<String> = (0..n)
            .map(|i| {
                if i % 97 == 5 {
                    "{\"actionType\": [1, \"]\"]}".to_owned()
                } else {
                    trigger(&id(i as u32))
                }
            })
            .collect();
        let jsonl = lines.join("\n");
        assert!(jsonl.len() > MAX_TRIGGER_TEXT);
        let (format, items) = parse(&jsonl);
        assert_eq!(format, InputFormat::JsonLines);
        assert_eq!(items.len(), n);
        assert_eq!(items[5].line, 6);
        assert!(items[5].outcome.is_err() && items[6].outcome.is_ok());
        let array = format!("[\n{}\n]\n", lines.join(",\n"));
        let (format, array_items) = parse(&array);
        assert_eq!(format, InputFormat::JsonArray);
        assert_eq!(
            summary(&array_items),
            summary(&items)
                .into_iter()
                .map(|(l, c)| (l + 1, c))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read_triggers(
            "/no/such/triggers.jsonl",
            &Catalogue::builtin(),
            IntakeOptions::default(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "trigger file /no/such/triggers.jsonl does not exist");
    }

    #[test]
    fn catalogue_from_a_path() {
        assert_eq!(load_catalogue(None).unwrap(), Catalogue::builtin());
        let dir = tempfile::tempdir().unwrap();
        let e = load_catalogue(Some(&dir.path().join("nope.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nope.toml") && e.contains("does not exist"),
            "{e}"
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "version = \"1\"\n[[actions]]\nname = \"x\"\n[[actions.parameters]]\nname = \"p\"\ntype = \"float\"\n").unwrap();
        let e = load_catalogue(Some(&bad)).unwrap_err().to_string();
        assert!(
            e.contains("bad.toml") && e.contains("unknown type \"float\""),
            "{e}"
        );
        let good = dir.path().join("good.toml");
        std::fs::write(&good, gcx_protocol::catalogue::DEFAULT_TOML).unwrap();
        assert_eq!(load_catalogue(Some(&good)).unwrap(), Catalogue::builtin());
    }
}
