//! Bad input at every REST endpoint: random bytes, random JSON, mangled events and
//! queries, random content types, methods and credentials. No answer may be a 5xx (no
//! fault is injected), every error from the events endpoints is a Genesys error body,
//! every answer carries the REST headers, and the server keeps answering.

mod rest_support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rest_support::*;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Auth {
    None,
    Valid,
    Garbage(String),
    Basic,
}

#[derive(Debug, Clone)]
struct Req {
    method: reqwest::Method,
    path: String,
    auth: Auth,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        Just(json!(Uuid::new_v4().to_string())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(".{0,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid event with a few random changes (keys dropped, replaced, added, recased).
fn mangled_event() -> impl Strategy<Value = Value> {
    const KEYS: [&str; 6] = gcx_protocol::events::EVENT_KEYS;
    (
        prop::sample::select(&STATES[..]),
        prop::collection::vec(
            (prop::sample::select(&KEYS[..]), 0..4u8, json_value()),
            0..3,
        ),
    )
        .prop_map(|(state, changes)| {
            let mut e = ev(Uuid::new_v4(), state);
            for (key, how, value) in changes {
                match how {
                    0 => {
                        e.as_object_mut().unwrap().remove(key);
                    }
                    1 => e[key] = value,
                    2 => e["extra"] = value,
                    _ => {
                        if let Some(s) = e[key].as_str() {
                            e[key] = json!(s.to_uppercase());
                        }
                    }
                }
            }
            e
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(mangled_event(), 0..6).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (
            prop::sample::select(vec!["sequenceIds", "batchId", "agentIds", "cursor", "x"]),
            json_value()
        )
            .prop_map(|(k, v)| serde_json::to_vec(&json!({ k: v })).unwrap()),
        (json_value(), any::<bool>()).prop_map(|(v, more)| {
            let mut q = json!({"agentIds": [Uuid::new_v4()], "cursor": v});
            if more {
                q["batchId"] = json!(Uuid::new_v4());
            }
            serde_json::to_vec(&q).unwrap()
        }),
        "[a-z_]{1,10}=[a-z_ ]{0,20}(&[a-z_]{1,10}=[a-z:]{0,20})?".prop_map(String::into_bytes),
    ]
}

fn request() -> impl Strategy<Value = Req> {
    let path = prop::sample::select(vec![
        EVENTS.to_owned(),
        format!("{EVENTS}?async=true"),
        format!("{EVENTS}?async=false"),
        format!("{EVENTS}?async=%ff&async"),
        QUERY.to_owned(),
        "/oauth/token".to_owned(),
        "/api/v2/unknown".to_owned(),
    ]);
    let method = prop_oneof![
        8 => Just(reqwest::Method::POST),
        1 => Just(reqwest::Method::GET),
        1 => Just(reqwest::Method::PUT),
    ];
    let auth = prop_oneof![
        1 => Just(Auth::None),
        3 => Just(Auth::Valid),
        1 => "[ -~]{0,30}".prop_map(Auth::Garbage),
        1 => Just(Auth::Basic),
    ];
    let content_type = prop_oneof![
        1 => Just(None),
        3 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    (method, path, auth, content_type, body()).prop_map(
        |(method, path, auth, content_type, body)| Req {
            method,
            path,
            auth,
            content_type,
            body,
        },
    )
}

#[test]
fn random_requests_never_break_the_rest_endpoints() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(start_default());
    let token = rt.block_on(s.token());
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |req| {
        let mut builder = s
            .http
            .request(req.method.clone(), format!("{}{}", s.base, req.path))
            .body(req.body.clone());
        match &req.auth {
            Auth::None => {}
            Auth::Valid => builder = builder.bearer_auth(&token),
            Auth::Basic => builder = builder.basic_auth("gcx-demo", Some("gcx-demo-secret")),
            Auth::Garbage(g) => {
                if let Ok(v) = reqwest::header::HeaderValue::from_str(g) {
                    builder = builder.header("authorization", v);
                }
            }
        }
        if let Some(ct) = &req.content_type
            && let Ok(v) = reqwest::header::HeaderValue::from_str(ct)
        {
            builder = builder.header("content-type", v);
        }
        let (status, headers, bytes) = rt.block_on(async {
            let r = builder.send().await.expect("the server answers");
            let status = r.status();
            let headers = r.headers().clone();
            (status, headers, r.bytes().await.expect("a whole body"))
        });
        prop_assert!(status.as_u16() < 500, "{status} for {req:?}");
        let answer = Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        answer.assert_rest_headers();
        let genesys = req.path.starts_with("/api/v2/");
        if genesys && status.as_u16() >= 400 {
            let code = answer.error_code().to_owned();
            prop_assert!(!code.is_empty());
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }

    // Still serving, and still right.
    rt.block_on(async {
        let agent = Uuid::new_v4();
        let a = s
            .post_events(
                &token,
                false,
                &json!([ev(agent, AVAILABLE), ev(agent, WRAPPING)]),
            )
            .await;
        assert_eq!(statuses(&a), ["accepted", "rejected"]);
        let e = s.events_stats().await;
        assert!(e["requests"].as_u64().unwrap() > 100);
    });
}
