//! `gcx watch`: watches users' routing status, presence and conversations through the
//! Notifications API ([`crate::notify`]) and prints each notification as a JSON line, or
//! a live table on a terminal, until Ctrl-C or `--duration`.
//!
//! stdout carries the notifications (jsonl) or the table; stderr the system events
//! (rejected topics, reconnects, `socket_closing`, new channels: the watcher's log
//! lines), the line saying watching has started, and a one-line summary at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::SecondsFormat;
use gcx_protocol::genesys_notifications::{
    CallState, NotifiedRoutingStatus, PresenceBody, UserTopic, UserTopicKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::GlobalArgs;
use crate::auth::{Credentials, TokenProvider};
use crate::config::{Config, endpoints};
use crate::notify::{KeyReader, NotificationsApi, ObsKey, Observed, WatchOptions, Watcher};

/// Most bytes a users file may hold (20,000 UUIDs with comments fit many times over).
const USERS_FILE_CAP: u64 = 8 << 20;
/// The table is drawn at most this often.
const REDRAW: Duration = Duration::from_millis(250);
/// Most users the table shows (the most recently changed first).
const TABLE_ROWS: usize = 40;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when stopped by Ctrl-C or --duration; 2 when watching \
could not start (no user, more topics than 20 channels hold, every topic rejected: the missing \
permission is named, login refused...) or when every channel stopped."
)]
pub struct Args {
    /// A user to watch (repeatable).
    #[arg(long = "user", value_name = "UUID")]
    pub users: Vec<Uuid>,
    /// A file of users to watch: one UUID per line; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Topics to watch per user, comma-separated: routingStatus, presence, conversations
    /// (default: all three).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub topics: Vec<UserTopicKind>,
    /// Output: one JSON line per notification, or a live table (default: table on a
    /// terminal, jsonl otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Stop after this long ("60s", "5m"); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The keep-alive's quiet interval: ping after one, reconnect after two (testing aid).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    pub keepalive: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Table,
}

fn parse_kind(text: &str) -> Result<UserTopicKind, String> {
    UserTopicKind::ALL
        .into_iter()
        .find(|k| k.suffix().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| {
            format!("{text:?} is not a topic; expected routingStatus, presence or conversations")
        })
}

pub async fn run(args: Args, global: &GlobalArgs, config: Config) -> anyhow::Result<ExitCode> {
    let _ = global;
    let users = users(&args)?;
    let kinds: BTreeSet<UserTopicKind> = if args.topics.is_empty() {
        UserTopicKind::ALL.into_iter().collect()
    } else {
        args.topics.iter().copied().collect()
    };
    let topics: Vec<UserTopic> = users
        .iter()
        .flat_map(|&user_id| kinds.iter().map(move |&kind| UserTopic { user_id, kind }))
        .collect();
    // Refused before logging in: how many users fit is known without asking anyone.
    crate::notify::plan::split(topics.clone())?;
    let api = api(&config)?;
    let mut options = WatchOptions::default();
    if let Some(k) = args.keepalive {
        options.keepalive = k.max(Duration::from_millis(10));
    }
    let (watcher, mut observed) = Watcher::start(api, topics, options).await?;
    let started = Instant::now();
    let stats = watcher.stats();
    let rejected = match stats.rejected {
        0 => String::new(),
        n => format!(" ({n} rejected)"),
    };
    eprintln!(
        "watching {} topics of {} users on {} channel(s){rejected}",
        stats.topics - stats.rejected,
        users.len(),
        stats.channels
    );

    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Jsonl
    });
    let mut output = Output::new(format, &users);
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut redraw = tokio::time::interval(REDRAW);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ended = loop {
        tokio::select! {
            _ = &mut stop => break Ok(()),
            _ = &mut ctrl_c => break Ok(()),
            next = observed.recv() => match next {
                Some(o) => {
                    if !output.on(&o, observed.is_empty())? {
                        // stdout closed (a pipe's reader left): nothing more to show.
                        break Ok(());
                    }
                }
                None => break Err(watcher.failures()),
            },
            _ = redraw.tick(), if format == Format::Table => output.draw()?,
        }
    };
    output.draw()?;
    let failures = watcher.failures();
    let stats = watcher.stop().await;
    eprintln!(
        "watched for {}: {} notifications, {} reconnects, {} socket_closing, {} new channels, \
         {} gaps ({} without a socket)",
        humantime::format_duration(Duration::from_secs(started.elapsed().as_secs())),
        stats.notifications,
        stats.reconnects,
        stats.socket_closing,
        stats.resubscribes,
        stats.gaps,
        humantime::format_duration(whole_millis(stats.gap_total)),
    );
    for f in &failures {
        eprintln!("channel {} stopped: {}", f.channel, f.error);
    }
    match ended {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(failures) => {
            let why: Vec<String> = failures.iter().map(|f| f.error.clone()).collect();
            bail!("every notification channel stopped: {}", why.join("; "))
        }
    }
}

/// `d` without its sub-millisecond part (for display).
fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The users of `--user` and `--users-file`, duplicates dropped, in the order given.
fn users(args: &Args) -> anyhow::Result<Vec<Uuid>> {
    let mut users = args.users.clone();
    if let Some(path) = &args.users_file {
        users.extend(read_users_file(path)?);
    }
    let mut seen = BTreeSet::new();
    users.retain(|u| seen.insert(*u));
    if users.is_empty() {
        bail!("no user to watch: give --user UUID (repeatable) or --users-file FILE");
    }
    Ok(users)
}

/// One UUID per line; blank lines and `#` comments (whole-line or trailing) skipped.
/// Every bad line is reported at once, with its number.
fn read_users_file(path: &Path) -> anyhow::Result<Vec<Uuid>> {
    let text = crate::bounded_read::read_to_string(path, USERS_FILE_CAP)
        .with_context(|| format!("cannot read the users file {}", path.display()))?;
    parse_users(&text).map_err(|bad| {
        let shown: Vec<String> = bad
            .iter()
            .take(10)
            .map(|(line, text)| format!("{}:{line}: {text:?} is not a UUID", path.display()))
            .collect();
        let more = match bad.len() {
            0..=10 => String::new(),
            n => format!("\n({} more bad lines)", n - 10),
        };
        anyhow::anyhow!(
            "{}{more}\nexpected one user id (a UUID such as 6a3af858-942f-489d-9700-5f9bcdcd0001) per line; `#` starts a comment",
            shown.join("\n")
        )
    })
}

/// The UUIDs of `text`, or every bad line (1-based number, its text).
fn parse_users(text: &str) -> Result<Vec<Uuid>, Vec<(usize, String)>> {
    let mut users = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        match Uuid::parse_str(content) {
            Ok(u) => users.push(u),
            Err(_) => bad.push((n + 1, content.to_owned())),
        }
    }
    if bad.is_empty() { Ok(users) } else { Err(bad) }
}

/// The Notifications API of the configured org or sandbox, with its login.
fn api(config: &Config) -> anyhow::Result<NotificationsApi> {
    let g = &config.genesys;
    let e = endpoints(g).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nno target: give --base-url (a sandbox prints its URL) or --region, or configure genesys.api_base"
        )
    })?;
    let credentials = Credentials::from_config(g, &e)?;
    let http = crate::http_client::build(crate::notify::api::REQUEST_TIMEOUT)?;
    let tokens = TokenProvider::new(credentials, http)?;
    Ok(NotificationsApi::new(&e.api_base, tokens)?)
}

/// One notification as a JSON line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    /// When it was read (ISO-8601, UTC, milliseconds).
    pub at: String,
    pub topic: String,
    pub user: Uuid,
    /// `routingStatus`, `presence` or `conversations`.
    pub kind: String,
    pub body: Value,
}

impl Line {
    fn of(o: &Observed) -> Line {
        Line {
            at: o.received_wall.to_rfc3339_opts(SecondsFormat::Millis, true),
            topic: o.topic.to_string(),
            user: o.topic.user_id,
            kind: o.topic.kind.suffix().to_owned(),
            body: o.body.clone(),
        }
    }
}

/// What a user looks like in the table.
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    routing: Option<NotifiedRoutingStatus>,
    presence: Option<String>,
    call: Option<(CallState, bool)>,
    changed: Option<Instant>,
}

/// Where notifications go: stdout as JSON lines, or the table's state.
struct Output {
    format: Format,
    stdout: std::io::BufWriter<std::io::Stdout>,
    rows: BTreeMap<Uuid, Row>,
    keys: KeyReader,
    notifications: u64,
    /// Whether a notification came since the table was last drawn.
    dirty: bool,
}

impl Output {
    fn new(format: Format, users: &[Uuid]) -> Output {
        Output {
            format,
            stdout: std::io::BufWriter::new(std::io::stdout()),
            rows: users.iter().map(|u| (*u, Row::default())).collect(),
            keys: KeyReader::new(),
            notifications: 0,
            dirty: true,
        }
    }

    /// Takes one notification; `false` once stdout is closed.
    fn on(&mut self, o: &Observed, flush: bool) -> anyhow::Result<bool> {
        self.notifications += 1;
        match self.format {
            Format::Jsonl => {
                let written = serde_json::to_writer(&mut self.stdout, &Line::of(o))
                    .map_err(std::io::Error::from)
                    .and_then(|()| self.stdout.write_all(b"\n"))
                    .and_then(|()| if flush { self.stdout.flush() } else { Ok(()) });
                match written {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
                    other => other.map(|()| true).context("cannot write to stdout"),
                }
            }
            Format::Table => {
                apply(&mut self.rows, &mut self.keys, o);
                self.dirty = true;
                Ok(true)
            }
        }
    }

    /// Redraws the table if something changed.
    fn draw(&mut self) -> anyhow::Result<()> {
        if self.format == Format::Jsonl {
            return match self.stdout.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("cannot write to stdout"),
            };
        }
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let text = render(&self.rows, self.notifications, Instant::now(), TABLE_ROWS);
        // Home, clear, then the table: one write, so a frame is never half drawn.
        let frame = format!("\x1b[H\x1b[2J{text}");
        match self
            .stdout
            .write_all(frame.as_bytes())
            .and_then(|()| self.stdout.flush())
        {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("cannot write to stdout"),
        }
    }
}

/// One notification applied to its user's row.
fn apply(rows: &mut BTreeMap<Uuid, Row>, keys: &mut KeyReader, o: &Observed) {
    let row = rows.entry(o.topic.user_id).or_default();
    let mut changed = false;
    for key in keys.keys(o) {
        match key {
            ObsKey::Routing { status, .. } => row.routing = Some(status),
            ObsKey::Presence { definition, .. } => {
                let name = PresenceBody::deserialize(&o.body)
                    .ok()
                    .and_then(|b| b.presence_definition.system_presence)
                    .unwrap_or_else(|| definition.to_string());
                row.presence = Some(name);
            }
            ObsKey::Call { state, held, .. } => row.call = Some((state, held)),
        }
        changed = true;
    }
    if changed {
        row.changed = Some(o.received_at);
    }
}

/// The table: a header, then one line per user, the most recently changed first.
fn render(rows: &BTreeMap<Uuid, Row>, notifications: u64, now: Instant, max: usize) -> String {
    let mut order: Vec<(&Uuid, &Row)> = rows.iter().collect();
    order.sort_by(|a, b| b.1.changed.cmp(&a.1.changed).then(a.0.cmp(b.0)));
    let mut out = format!(
        "{} users, {notifications} notifications\n{:<36}  {:<14}  {:<12}  {:<18}  {}\n",
        rows.len(),
        "USER",
        "ROUTING",
        "PRESENCE",
        "CALL",
        "CHANGED"
    );
    for (user, row) in order.iter().take(max) {
        let routing = row.routing.map_or("-".to_owned(), routing_name);
        let presence = row.presence.clone().unwrap_or_else(|| "-".into());
        let call = match row.call {
            None => "-".to_owned(),
            Some((state, held)) => {
                let state = match state {
                    CallState::Alerting => "alerting",
                    CallState::Connected => "connected",
                    CallState::Disconnected => "disconnected",
                };
                if held && state != "disconnected" {
                    format!("{state} (held)")
                } else {
                    state.to_owned()
                }
            }
        };
        let changed = row.changed.map_or("-".to_owned(), |at| {
            format!("{}s ago", now.saturating_duration_since(at).as_secs())
        });
        out.push_str(&format!(
            "{user:<36}  {routing:<14}  {presence:<12}  {call:<18}  {changed}\n"
        ));
    }
    if rows.len() > max {
        out.push_str(&format!("... and {} more users\n", rows.len() - max));
    }
    out
}

fn routing_name(s: NotifiedRoutingStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_files_take_comments_and_report_every_bad_line() {
        let text = "# agents\n00000000-0000-0000-0000-000000000001\n\n  00000000-0000-0000-0000-000000000002  # bob\nnope\n00000000-0000-0000-0000-00000000000g\n";
        assert_eq!(
            parse_users(text).unwrap_err(),
            [
                (5, "nope".to_owned()),
                (6, "00000000-0000-0000-0000-00000000000g".to_owned())
            ]
        );
        let good = "# agents\n00000000-0000-0000-0000-000000000001\n00000000-0000-0000-0000-000000000002 # bob\n";
        assert_eq!(
            parse_users(good).unwrap(),
            [Uuid::from_u128(1), Uuid::from_u128(2)]
        );
    }

    #[test]
    fn topic_names_read_as_kinds() {
        assert_eq!(
            parse_kind("routingStatus"),
            Ok(UserTopicKind::RoutingStatus)
        );
        assert_eq!(parse_kind(" Presence "), Ok(UserTopicKind::Presence));
        assert!(
            parse_kind("geolocation")
                .unwrap_err()
                .contains("expected routingStatus")
        );
    }

    fn observed(kind: UserTopicKind, body: Value, at: Instant) -> Observed {
        Observed {
            topic: UserTopic {
                user_id: Uuid::from_u128(1),
                kind,
            },
            received_at: at,
            received_wall: chrono::Utc::now(),
            body,
        }
    }

    #[test]
    fn the_table_shows_each_users_latest_state() {
        let t0 = Instant::now();
        let users = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let mut rows: BTreeMap<Uuid, Row> = users.iter().map(|u| (*u, Row::default())).collect();
        let mut keys = KeyReader::new();
        let user = users[0];
        apply(
            &mut rows,
            &mut keys,
            &observed(
                UserTopicKind::RoutingStatus,
                json!({"id": user, "routingStatus": {"status": "INTERACTING"}}),
                t0,
            ),
        );
        apply(
            &mut rows,
            &mut keys,
            &observed(
                UserTopicKind::Presence,
                json!({"presenceDefinition": {"id": Uuid::from_u128(5), "systemPresence": "Busy"}}),
                t0,
            ),
        );
        apply(
            &mut rows,
            &mut keys,
            &observed(
                UserTopicKind::Conversations,
                json!({"id": Uuid::from_u128(9), "participants": [{"id": Uuid::from_u128(8),
                       "userId": user, "calls": [{"id": Uuid::from_u128(7), "state": "connected", "held": true}]}]}),
                t0,
            ),
        );
        let text = render(&rows, 3, t0 + Duration::from_secs(4), 40);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "2 users, 3 notifications");
        assert!(lines[1].starts_with("USER"), "{text}");
        let first = lines[2];
        assert!(first.starts_with(&user.to_string()), "{text}");
        for part in ["INTERACTING", "Busy", "connected (held)", "4s ago"] {
            assert!(first.contains(part), "{part} missing: {first}");
        }
        assert!(
            lines[3].contains(" -  "),
            "an unchanged user shows dashes: {text}"
        );
        let short = render(&rows, 3, t0, 1);
        assert!(short.ends_with("... and 1 more users\n"), "{short}");
    }

    #[test]
    fn a_json_line_names_topic_user_and_kind() {
        let o = observed(UserTopicKind::Presence, json!({"x": 1}), Instant::now());
        let v = serde_json::to_value(Line::of(&o)).unwrap();
        assert_eq!(
            v["topic"],
            format!("v2.users.{}.presence", Uuid::from_u128(1))
        );
        assert_eq!(v["user"], Uuid::from_u128(1).to_string());
        assert_eq!(v["kind"], "presence");
        assert_eq!(v["body"], json!({"x": 1}));
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
    }
}
