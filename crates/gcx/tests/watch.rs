//! The Notifications client (`gcx::notify`) and `gcx watch` end to end, against a real
//! sandbox in this process: routing statuses injected through the Events API come back
//! as notifications, matched by the observer; topics spread over channels; the keep-alive,
//! `socket_closing` and a lost server handled without missing what was sent while a socket
//! was open; every topic rejected is an error naming the permission; and the binary's
//! JSON lines, summary and refusals.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use gcx::auth::{Credentials, TokenProvider};
use gcx::notify::{
    KeyReader, NotificationsApi, NotifyError, ObsKey, Observed, Observer, WatchOptions, Watcher,
};
use gcx::retry::RetryPolicy;
use gcx_protocol::genesys_events::{ROUTING_STATUS_PATH, RoutingStatus};
use gcx_protocol::genesys_notifications::{NotifiedRoutingStatus, UserTopic, UserTopicKind};
use gcx_sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// How long any one thing the tests wait for may take (generous: a 2-core machine is busy).
const PATIENCE: Duration = Duration::from_secs(20);

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).await.unwrap()
}

fn tokens(sb: &Sandbox) -> TokenProvider {
    TokenProvider::new(
        Credentials::sandbox_demo(&sb.base_url()),
        gcx::http_client::build(Duration::from_secs(10)).unwrap(),
    )
    .unwrap()
}

fn api(sb: &Sandbox) -> NotificationsApi {
    NotificationsApi::new(&sb.base_url(), tokens(sb)).unwrap()
}

/// Options for tests: quick reconnects, a keep-alive of `keepalive`.
fn options(keepalive: Duration) -> WatchOptions {
    WatchOptions {
        keepalive,
        reconnect: RetryPolicy::new(Duration::from_millis(50), Duration::from_millis(500))
            .with_deadline(PATIENCE),
        ..WatchOptions::default()
    }
}

fn users(n: u128) -> Vec<Uuid> {
    (1..=n).map(|i| Uuid::from_u128(0x5eed_0000 + i)).collect()
}

fn topics(users: &[Uuid], kinds: &[UserTopicKind]) -> Vec<UserTopic> {
    users
        .iter()
        .flat_map(|&user_id| kinds.iter().map(move |&kind| UserTopic { user_id, kind }))
        .collect()
}

/// Injects one routing status for `user`; returns when the request was sent.
async fn inject(base: &str, tokens: &TokenProvider, user: Uuid, status: RoutingStatus) -> Instant {
    let body = json!({"userRoutingStatusEvents": [{
        "eventId": Uuid::new_v4(),
        "eventDateTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "agentId": user,
        "status": status,
        "sourceId": "gcx-watch-test",
    }]});
    let sent = Instant::now();
    let token = tokens.token().await.unwrap();
    let answer = reqwest_client()
        .post(format!("{base}{ROUTING_STATUS_PATH}"))
        .bearer_auth(token.expose())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["errors"], json!([]), "{answer}");
    sent
}

fn reqwest_client() -> reqwest::Client {
    gcx::http_client::build(Duration::from_secs(10)).unwrap()
}

async fn put_faults(sb: &Sandbox, faults: Value) {
    let answer = reqwest_client()
        .put(format!("{}/sandbox/faults", sb.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// Reads notifications, feeding the observer, until it has no expectation waiting.
async fn observe_all(
    rx: &mut mpsc::Receiver<Observed>,
    reader: &mut KeyReader,
    observer: &mut Observer,
) {
    let deadline = Instant::now() + PATIENCE;
    while observer.waiting() > 0 {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let observed = match next {
            Ok(Some(o)) => o,
            Ok(None) => panic!("the watcher stopped"),
            Err(_) => panic!("{} expectations never observed", observer.waiting()),
        };
        for key in reader.keys(&observed) {
            observer.observe(key, observed.received_at);
        }
    }
}

fn routing(user: Uuid, status: RoutingStatus) -> ObsKey {
    ObsKey::Routing {
        user,
        status: NotifiedRoutingStatus::from(status),
    }
}

#[tokio::test]
async fn more_topics_than_twenty_channels_hold_are_refused_before_any_request() {
    let sb = sandbox().await;
    let api = api(&sb);
    let all = topics(&users(6_667), &UserTopicKind::ALL);
    let error = Watcher::start(api.clone(), all, WatchOptions::default())
        .await
        .err()
        .expect("20,001 topics must be refused");
    assert!(
        matches!(error, NotifyError::TooManyTopics { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("at most 6666 users (6667 asked)"),
        "{error}"
    );
    assert_eq!(
        api.tokens().fetches(),
        0,
        "nothing may be sent, not even a login"
    );
}

#[tokio::test]
async fn injected_routing_statuses_are_observed_and_matched() {
    let sb = sandbox().await;
    let api = api(&sb);
    let tokens = api.tokens().clone();
    let watched = users(3);
    let (watcher, mut rx) = Watcher::start(
        api,
        topics(&watched, &UserTopicKind::ALL),
        options(Duration::from_secs(35)),
    )
    .await
    .unwrap();
    let stats = watcher.stats();
    assert_eq!((stats.channels, stats.topics, stats.rejected), (1, 9, 0));
    assert!(watcher.rejected().is_empty());

    let mut observer = Observer::new();
    let mut reader = KeyReader::new();
    for status in [RoutingStatus::Idle, RoutingStatus::Interacting] {
        for &user in &watched {
            let sent = inject(&sb.base_url(), &tokens, user, status).await;
            observer.expect(routing(user, status), sent);
        }
    }
    observe_all(&mut rx, &mut reader, &mut observer).await;
    let report = observer.finish(Instant::now(), Duration::ZERO);
    assert_eq!((report.expected, report.observed_matched), (6, 6));
    assert_eq!(report.unobserved.count, 0);
    assert_eq!(report.unexpected.count, 0);
    assert!(
        report
            .max_ms
            .is_some_and(|ms| ms < PATIENCE.as_millis() as f64)
    );

    let stats = watcher.stop().await;
    assert!(stats.notifications >= 6, "{stats:?}");
    assert_eq!(
        (stats.reconnects, stats.gaps, stats.channels_failed),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn topics_past_a_thousand_go_to_a_second_channel() {
    let sb = sandbox().await;
    let api = api(&sb);
    let tokens = api.tokens().clone();
    let watched = users(1_001);
    let (watcher, mut rx) = Watcher::start(
        api,
        topics(&watched, &[UserTopicKind::RoutingStatus]),
        options(Duration::from_secs(35)),
    )
    .await
    .unwrap();
    assert_eq!(watcher.stats().channels, 2);
    assert_eq!(watcher.stats().channels_created, 2);
    let mut observer = Observer::new();
    let mut reader = KeyReader::new();
    // The first user's topic is on the first channel, the last user's on the second.
    for user in [watched[0], watched[1_000]] {
        let sent = inject(&sb.base_url(), &tokens, user, RoutingStatus::Idle).await;
        observer.expect(routing(user, RoutingStatus::Idle), sent);
    }
    observe_all(&mut rx, &mut reader, &mut observer).await;
    assert_eq!(observer.matched(), 2);
    watcher.stop().await;
}

#[tokio::test]
async fn a_quiet_socket_is_pinged_and_stays_up() {
    let sb = sandbox().await;
    // Heartbeats far apart: only pongs keep the socket alive.
    put_faults(&sb, json!({"genesys_heartbeat_ms": 600_000})).await;
    let (watcher, _rx) = Watcher::start(
        api(&sb),
        topics(&users(1), &[UserTopicKind::Presence]),
        options(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while watcher.stats().pongs < 3 {
        assert!(Instant::now() < deadline, "{:?}", watcher.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = watcher.stop().await;
    assert!(stats.pings >= stats.pongs, "{stats:?}");
    assert_eq!((stats.dead_sockets, stats.reconnects), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn heartbeats_keep_a_socket_alive_without_pings() {
    let sb = sandbox().await;
    put_faults(&sb, json!({"genesys_heartbeat_ms": 100})).await;
    let (watcher, _rx) = Watcher::start(
        api(&sb),
        topics(&users(1), &[UserTopicKind::Presence]),
        options(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while watcher.stats().heartbeats < 5 {
        assert!(Instant::now() < deadline, "{:?}", watcher.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = watcher.stop().await;
    assert_eq!(
        stats.pings, 0,
        "heartbeats every 100 ms never leave 3 s of quiet"
    );
}

#[tokio::test]
async fn socket_closing_switches_sockets_without_missing_a_notification() {
    let sb = sandbox().await;
    put_faults(
        &sb,
        json!({"genesys_socket_closing_every_ms": 300, "genesys_socket_closing_grace_ms": 2000}),
    )
    .await;
    let api = api(&sb);
    let tokens = api.tokens().clone();
    let user = users(1)[0];
    let (watcher, mut rx) = Watcher::start(
        api,
        topics(&[user], &[UserTopicKind::RoutingStatus]),
        options(Duration::from_secs(35)),
    )
    .await
    .unwrap();
    let mut observer = Observer::new();
    let mut reader = KeyReader::new();
    // Alternating statuses (a repeated one is no change, so no notification) for about
    // two seconds: several sockets come and go meanwhile.
    for i in 0..40 {
        let status = if i % 2 == 0 {
            RoutingStatus::Idle
        } else {
            RoutingStatus::Interacting
        };
        let sent = inject(&sb.base_url(), &tokens, user, status).await;
        observer.expect(routing(user, status), sent);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    observe_all(&mut rx, &mut reader, &mut observer).await;
    let stats = watcher.stop().await;
    assert!(stats.socket_closing >= 1, "{stats:?}");
    assert!(stats.sockets_opened > 1, "{stats:?}");
    assert_eq!((stats.gaps, stats.reconnects), (0, 0), "{stats:?}");
    assert_eq!(
        observer
            .finish(Instant::now(), Duration::ZERO)
            .unexpected
            .count,
        0
    );
}

#[tokio::test]
async fn a_server_that_went_away_is_found_again_on_a_new_channel() {
    let listener = bind(None);
    let addr = listener.local_addr().unwrap();
    let first = Sandbox::start_on(listener, SandboxOptions::default()).unwrap();
    let api = api(&first);
    let tokens = api.tokens().clone();
    let user = users(1)[0];
    let (watcher, mut rx) = Watcher::start(
        api,
        topics(&[user], &[UserTopicKind::RoutingStatus]),
        options(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    first.shutdown().await.unwrap();
    // The same address, a sandbox that knows neither the channel nor the token.
    let second = Sandbox::start_on(bind(Some(addr)), SandboxOptions::default()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while watcher.stats().resubscribes == 0 {
        assert!(Instant::now() < deadline, "{:?}", watcher.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut observer = Observer::new();
    let mut reader = KeyReader::new();
    let sent = inject(&second.base_url(), &tokens, user, RoutingStatus::Idle).await;
    observer.expect(routing(user, RoutingStatus::Idle), sent);
    observe_all(&mut rx, &mut reader, &mut observer).await;
    let gaps = watcher.gaps();
    let stats = watcher.stop().await;
    assert_eq!(stats.resubscribes, 1, "{stats:?}");
    assert_eq!(stats.gaps, 1, "{stats:?}");
    assert!(gaps[0].to > gaps[0].from);
    assert_eq!(stats.channels_failed, 0);
}

/// A listener on `addr` (or a free port), reusable at once after a previous one closed.
fn bind(addr: Option<std::net::SocketAddr>) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
        .unwrap();
    socket.listen(1024).unwrap()
}

#[tokio::test]
async fn every_topic_rejected_is_an_error_naming_the_permission() {
    let sb = sandbox().await;
    put_faults(
        &sb,
        json!({"genesys_withheld_permissions": {"gcx-demo": ["routing:routingStatus:view"]}}),
    )
    .await;
    let error = Watcher::start(
        api(&sb),
        topics(&users(2), &[UserTopicKind::RoutingStatus]),
        options(Duration::from_secs(35)),
    )
    .await
    .err()
    .expect("every topic is rejected");
    assert!(matches!(error, NotifyError::AllRejected { .. }), "{error}");
    assert!(
        error.to_string().contains("routing:routingStatus:view"),
        "{error}"
    );
}

// The binary.

/// `gcx` with nothing from the real environment, HOME in `home`.
fn gcx(home: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcx"));
    c.env_clear()
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn output(c: &mut tokio::process::Command) -> (i32, String, String) {
    let out = tokio::time::timeout(PATIENCE, c.output())
        .await
        .expect("gcx watch ended")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn gcx_watch_refuses_bad_input_before_connecting() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens there: every refusal below comes before any connection.
    let base = ["--base-url", "http://127.0.0.1:9", "watch"];

    let (code, _, err) = output(gcx(home.path()).args(base)).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no user to watch: give --user UUID"), "{err}");

    let file = home.path().join("users.txt");
    std::fs::write(
        &file,
        "# team A\n6a3af858-942f-489d-9700-5f9bcdcd0001\nbob\n\n6a3af858-942f-489d-9700-5f9bcdcd000x # typo\n",
    )
    .unwrap();
    let (code, _, err) = output(gcx(home.path()).args(base).arg("--users-file").arg(&file)).await;
    assert_eq!(code, 2, "{err}");
    let shown = file.display();
    assert!(
        err.contains(&format!("{shown}:3: \"bob\" is not a UUID")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:5: \"6a3af858-942f-489d-9700-5f9bcdcd000x\" is not a UUID"
        )),
        "{err}"
    );

    let many: String = users(6_667).iter().map(|u| format!("{u}\n")).collect();
    std::fs::write(&file, many).unwrap();
    let (code, _, err) = output(gcx(home.path()).args(base).arg("--users-file").arg(&file)).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("with 3 topic(s) per user that is at most 6666 users (6667 asked)"),
        "{err}"
    );

    let (code, _, err) = output(gcx(home.path()).args(base).args([
        "--user",
        &Uuid::from_u128(1).to_string(),
        "--topics",
        "geolocation",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("expected routingStatus, presence or conversations"),
        "{err}"
    );
}

#[tokio::test]
async fn gcx_watch_prints_one_json_line_per_notification() {
    let sb = sandbox().await;
    let home = tempfile::tempdir().unwrap();
    let watched = users(2);
    let mut command = gcx(home.path());
    command.args([
        "--base-url",
        &sb.base_url(),
        "watch",
        "--topics",
        "routingStatus",
    ]);
    for u in &watched {
        command.args(["--user", &u.to_string()]);
    }
    command.args(["--format", "jsonl", "--duration", "4s"]);
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = Vec::new();
    loop {
        let line = tokio::time::timeout(PATIENCE, stderr.next_line())
            .await
            .expect("gcx watch said it started")
            .unwrap()
            .unwrap_or_else(|| panic!("gcx watch ended early: {logged:?}"));
        let started = line.starts_with("watching ");
        logged.push(line);
        if started {
            break;
        }
    }
    assert_eq!(
        logged.last().unwrap(),
        "watching 2 topics of 2 users on 1 channel(s)"
    );
    let tokens = tokens(&sb);
    inject(&sb.base_url(), &tokens, watched[0], RoutingStatus::Idle).await;
    inject(
        &sb.base_url(),
        &tokens,
        watched[1],
        RoutingStatus::Interacting,
    )
    .await;
    let rest = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push(line);
        }
        rest
    });
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("gcx watch stopped after --duration")
        .unwrap();
    let logged = rest.await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{logged:?}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, (user, status)) in lines
        .iter()
        .zip([(watched[0], "IDLE"), (watched[1], "INTERACTING")])
    {
        assert_eq!(line["user"], user.to_string());
        assert_eq!(line["kind"], "routingStatus");
        assert_eq!(line["topic"], format!("v2.users.{user}.routingStatus"));
        assert_eq!(line["body"]["routingStatus"]["status"], status);
        let at = line["at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    }
    let summary = logged.last().unwrap();
    assert!(summary.starts_with("watched for "), "{logged:?}");
    assert!(
        summary.contains(": 2 notifications, 0 reconnects"),
        "{summary}"
    );
}

#[tokio::test]
async fn gcx_watch_exits_2_naming_the_permission_when_every_topic_is_rejected() {
    let sb = sandbox().await;
    put_faults(
        &sb,
        json!({"genesys_withheld_permissions": {"gcx-demo": ["routing:routingStatus:view"]}}),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let user = Uuid::from_u128(1).to_string();
    let (code, out, err) = output(gcx(home.path()).args([
        "--base-url",
        &sb.base_url(),
        "watch",
        "--user",
        &user,
        "--topics",
        "routingStatus",
        "--duration",
        "1s",
    ]))
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("every one of the 1 topics was rejected: the OAuth client lacks the permission(s) routing:routingStatus:view"),
        "{err}"
    );
}
