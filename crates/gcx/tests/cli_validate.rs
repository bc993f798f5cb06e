//! The built `gcx` binary on the shipped example files (`gcx validate`) and on layered
//! configuration (`gcx config show`), with a clean environment and a temporary HOME.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    repo().join("examples").join(name).display().to_string()
}

/// `gcx` with nothing inherited from the real environment and HOME set to `home`.
fn gcx(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gcx"));
    c.env_clear().env("HOME", home);
    c
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn the_mixed_example_lists_every_violation_and_exits_1() {
    let home = tempfile::tempdir().unwrap();
    let file = example("triggers.jsonl");
    let (code, out, err) = run(gcx(home.path()).args(["validate", &file]));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{file}:5: /actionType: unknown action type \"translate\"; expected one of knowledge_search, document_extraction, sentiment_analysis (catalogue 2026-11-01) (enum)"
            ),
            format!(
                "{file}:11: /parameterMatrix: sentiment_analysis needs exactly one of text, transcriptId; text and transcriptId were given (one_of)"
            ),
            format!(
                "{file}:17: /parameterMatrix/maxResults: value 500 is out of bounds; expected 1 to 50 (range)"
            ),
            "20 triggers in 1 file: 17 valid, 3 invalid".to_owned(),
        ]
    );
}

/// What a user reads for a file of broken triggers: every violation of every trigger,
/// each with its file, line and JSON Pointer, then the count; nothing on stderr.
/// `cargo insta review` (or `INSTA_UPDATE=always`) takes a change.
#[test]
fn a_broken_file_reads_as_written() {
    let home = tempfile::tempdir().unwrap();
    let valid = std::fs::read_to_string(example("triggers-valid.jsonl")).unwrap();
    let first = valid.lines().next().unwrap();
    let mut many: serde_json::Value = serde_json::from_str(first).unwrap();
    many["actionType"] = "document_extraction".into();
    many["parameterMatrix"] = serde_json::json!({"fields": [], "languageCode": null, "page": 2});
    many["executionContext"]["interactionType"] = "fax".into();
    many["correlationId"] = "550e8400-e29b-11d4-a716-446655440000".into();
    many["maxRetries"] = 9.into();
    let text = format!(
        "{first}\n{many}\n{{\"actionType\": \n\n[1, 2]\n{}\n",
        first.replace("voice", "carrier pigeon")
    );
    let file = home.path().join("broken.jsonl");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = run(gcx(home.path()).args(["validate", file.to_str().unwrap()]));
    assert_eq!(code, 1, "{out}{err}");
    let path = regex::escape(file.to_str().unwrap());
    insta::with_settings!({filters => vec![(path.as_str(), "[FILE]")]}, {
        insta::assert_snapshot!(format!("exit {code}\n--- stdout\n{out}--- stderr\n{err}"));
    });
}

#[test]
fn the_valid_example_exits_0() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(gcx(home.path()).args(["validate", &example("triggers-valid.jsonl")]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "17 triggers in 1 file: 17 valid, 0 invalid");
}

#[test]
fn json_output_for_several_files() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, _) = run(gcx(home.path()).args([
        "validate",
        "--output",
        "json",
        &example("triggers-valid.jsonl"),
        &example("triggers.jsonl"),
    ]));
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["valid"], 34);
    assert_eq!(doc["invalid"], 3);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["catalogueVersion"], "2026-11-01");
    let second = &doc["files"][1];
    assert_eq!(second["format"], "jsonl");
    let codes: Vec<&str> = second["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["violations"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["enum", "one_of", "range"]);
    assert_eq!(second["problems"][1]["line"], 11);
}

#[test]
fn stdin_array_with_a_broken_element() {
    let home = tempfile::tempdir().unwrap();
    let valid = std::fs::read_to_string(example("triggers-valid.jsonl")).unwrap();
    let first: Vec<&str> = valid.lines().take(2).collect();
    let body = format!("[\n{},\n{{\"actionType\": }},\n{}\n]\n", first[0], first[1]);
    let mut child = gcx(home.path())
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("<stdin>:3: (whole trigger): not JSON"),
        "{text}"
    );
    assert!(
        text.contains("3 triggers in 1 file: 2 valid, 1 invalid"),
        "{text}"
    );
}

#[test]
fn missing_files_and_scenarios_are_named() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, _) = run(gcx(home.path()).args(["validate", "/no/such.jsonl", "sim.toml"]));
    assert_eq!(code, 1);
    assert!(
        out.contains("/no/such.jsonl: trigger file /no/such.jsonl does not exist"),
        "{out}"
    );
    assert!(
        out.contains("sim.toml: cannot read the scenario file: No such file"),
        "{out}"
    );
}

#[test]
fn the_shipped_scenarios_are_valid() {
    let home = tempfile::tempdir().unwrap();
    let files: Vec<String> = ["smoke", "soak", "negative"]
        .iter()
        .map(|n| example(&format!("scenarios/{n}.toml")))
        .collect();
    let (code, out, err) = run(gcx(home.path()).arg("validate").args(&files));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "3 scenarios: 3 valid, 0 invalid");
}

#[test]
fn a_bad_scenario_lists_every_violation_with_its_place() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "batch_size = 0\n[agents]\ncount = 3\n[load]\nrate = 1e-20\n[time_in_state]\nbusy = \"3d\"\n",
    )
    .unwrap();
    let name = file.display().to_string();
    let (code, out, err) = run(gcx(home.path()).args(["validate", &name]));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{name}:1:14: `batch_size`: must be 1 to 500 (the events endpoint takes 1-500 events per request), got 0"
            ),
            format!(
                "{name}:5:8: `load.rate`: arrivals per second must be 0, or 0.001 to 100000, got 1e-20"
            ),
            format!(
                "{name}:7:8: `time_in_state.busy`: must be at most 24h (one dwell time), got 3days"
            ),
            "1 scenario: 0 valid, 1 invalid".to_owned(),
        ]
    );
    let (code, out, _) = run(gcx(home.path()).args(["validate", "--output", "json", &name]));
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], false);
    let v = &doc["files"][0]["violations"];
    assert_eq!(v.as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(v[1]["key"], "load.rate");
    assert_eq!(v[1]["line"], 5);
    assert_eq!(v[1]["column"], 8);
}

/// An endless input (`/dev/zero`: no newline, ever) is one `size` violation at line 1,
/// and the command returns having read only 256 KiB of it.
#[test]
fn dev_zero_is_one_size_violation_at_line_1() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = run(gcx(home.path()).args(["validate", "/dev/zero"]));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("/dev/zero:1: (whole trigger): a trigger's text runs past 262144 bytes (256 KiB) without ending"),
        "{out}"
    );
    assert!(lines[0].ends_with("(size)"), "{out}");
    assert_eq!(lines[1], "1 trigger in 1 file: 0 valid, 1 invalid");
}

/// Configuration files are read with a cap: an endless or oversized one is refused with
/// its name, its size and the cap.
#[test]
fn oversized_and_endless_config_files_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(gcx(home.path())
        .env("GCX_CONFIG", "/dev/zero")
        .args(["config", "show"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read config file /dev/zero: the file is more than 1048576 bytes; at most 1048576 bytes (1024 KiB) are read"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    let (code, _, err) =
        run(gcx(home.path()).args(["--config", big.to_str().unwrap(), "config", "show"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}: the file is 2000000 bytes; at most 1048576 bytes",
            big.display()
        )),
        "{err}"
    );

    std::fs::create_dir_all(home.path().join(".gc")).unwrap();
    std::fs::write(
        home.path().join(".gc/config.toml"),
        "# padding\n".repeat(200_000),
    )
    .unwrap();
    let (code, _, err) = run(gcx(home.path()).args(["config", "show"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(".gc/config.toml") && err.contains("the file is 2000000 bytes"),
        "{err}"
    );

    let scenario = dir.path().join("big-scenario.toml");
    std::fs::write(&scenario, "# padding\n".repeat(200_000)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let (code, out, _) = run(gcx(home.path()).args(["validate", scenario.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "cannot read the scenario file: the file is 2000000 bytes; at most 1048576 bytes"
        ),
        "{out}"
    );
}

/// A million `{}` lines: every one counted, the first 100 listed, the output a few KiB.
#[test]
fn a_million_empty_objects_give_bounded_output() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("million.jsonl");
    std::fs::write(&file, "{}\n".repeat(1_000_000)).unwrap();
    let name = file.display().to_string();
    let (code, out, err) = run(gcx(home.path()).args(["validate", &name]));
    assert_eq!(code, 1, "{err}");
    assert!(out.len() < 64 * 1024, "{} bytes printed", out.len());
    assert!(out.starts_with(&format!("{name}:1: /actionType:")), "{out}");
    assert!(out.contains(&format!("{name}:100: ")), "{out}");
    assert!(!out.contains(&format!("{name}:101: ")), "{out}");
    assert!(
        out.contains(&format!(
            "{name}: 999900 more invalid triggers not listed (the violations of the first 100 are)"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("1000000 triggers in 1 file: 0 valid, 1000000 invalid\n"),
        "{out}"
    );

    let (code, out, _) = run(gcx(home.path()).args(["validate", "--output", "json", &name]));
    assert_eq!(code, 1);
    assert!(out.len() < 128 * 1024, "{} bytes printed", out.len());
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["invalid"], 1_000_000);
    assert_eq!(doc["files"][0]["problems"].as_array().unwrap().len(), 100);
    assert_eq!(doc["files"][0]["problems_not_listed"], 999_900);
}

#[test]
fn an_operator_catalogue_from_the_config_file() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalogue = dir.path().join("catalogue.toml");
    std::fs::write(
        &catalogue,
        "version = \"ops-1\"\n[[actions]]\nname = \"translate\"\n[[actions.parameters]]\nname = \"text\"\ntype = \"string\"\nrequired = true\n[[actions.parameters]]\nname = \"targetLanguage\"\ntype = \"string\"\nformat = \"bcp47\"\n",
    )
    .unwrap();
    let config = dir.path().join("gcx.toml");
    std::fs::write(
        &config,
        format!(
            "[dispatch]\ncatalogue_path = {:?}\n",
            catalogue.display().to_string()
        ),
    )
    .unwrap();
    let (_, out, err) = run(gcx(home.path()).args([
        "--config",
        config.to_str().unwrap(),
        "validate",
        &example("triggers.jsonl"),
    ]));
    // Line 5 (translate) is valid now; the others name actions this catalogue lacks.
    assert!(!out.contains(":5:"), "{out}{err}");
    assert!(
        out.contains("20 triggers in 1 file: 1 valid, 19 invalid"),
        "{out}{err}"
    );
    assert!(out.contains("(catalogue ops-1)"), "{out}");

    // A catalogue that does not load stops the run with exit 2, naming the file.
    std::fs::write(&catalogue, "version = \"x\"\n[[actions]]\nname = \"a\"\n[[actions.parameters]]\nname = \"p\"\ntype = \"float\"\n").unwrap();
    let (code, _, err) = run(gcx(home.path()).args([
        "--config",
        config.to_str().unwrap(),
        "validate",
        &example("triggers.jsonl"),
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("catalogue.toml") && err.contains("unknown type \"float\""),
        "{err}"
    );
}

const PROFILES: &str = r#"
[DEFAULT]
environment = "mypurecloud.ie"
client_credentials = "profile-client"
client_secret = "profile-secret-value"

[prod_de]
environment = "eu_central_1"
client_credentials = "de-client"
"#;

fn home_with_profiles() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".gc")).unwrap();
    std::fs::write(home.path().join(".gc/config.toml"), PROFILES).unwrap();
    home
}

/// The row of `key` in `gcx config show` table output, split into (value, source).
fn row<'a>(out: &'a str, key: &str) -> (&'a str, &'a str) {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no row {key} in\n{out}"));
    let rest = line[key.len()..].trim_start();
    let (value, source) = rest.split_once("  ").unwrap();
    (value.trim(), source.trim())
}

#[test]
fn config_show_names_every_source() {
    let home = home_with_profiles();
    let (code, out, err) = run(gcx(home.path())
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "env-secret-value")
        .env("CRM_WEBHOOK_URL", "https://crm.example.com/hook")
        .args(["--data-dir", "/tmp/gcx-data", "config", "show"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        row(&out, "genesys.region"),
        ("mypurecloud.ie", "gc profile DEFAULT")
    );
    assert_eq!(
        row(&out, "genesys.client_id"),
        ("profile-client", "gc profile DEFAULT")
    );
    assert_eq!(
        row(&out, "genesys.client_secret"),
        ("<redacted>", "env GENESYSCLOUD_OAUTHCLIENT_SECRET")
    );
    assert_eq!(
        row(&out, "crm.url"),
        ("https://crm.example.com/hook", "env CRM_WEBHOOK_URL")
    );
    assert_eq!(
        row(&out, "store.data_dir"),
        ("/tmp/gcx-data", "flag --data-dir")
    );
    assert_eq!(row(&out, "log.format"), ("human", "default"));
    assert!(out.contains("api     https://api.mypurecloud.ie"), "{out}");
    assert!(!out.contains("secret-value"), "{out}");
    assert!(!err.contains("secret-value"), "{err}");
}

#[test]
fn config_show_json_with_a_named_profile() {
    let home = home_with_profiles();
    let (code, out, err) =
        run(gcx(home.path()).args(["--profile", "prod_de", "config", "show", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let setting = |key: &str| {
        doc["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(setting("genesys.client_id")["value"], "de-client");
    assert_eq!(setting("genesys.client_id")["source"], "gc profile prod_de");
    assert_eq!(
        setting("genesys.client_secret")["value"],
        serde_json::Value::Null
    );
    assert_eq!(
        doc["endpoints"]["login_base"],
        "https://login.mypurecloud.de"
    );
}

#[test]
fn config_errors_name_the_input() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[store]\ndata_dirr = \"x\"\n").unwrap();
    let (code, _, err) =
        run(gcx(home.path()).args(["--config", config.to_str().unwrap(), "config", "show"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("`store.data_dirr`"),
        "{err}"
    );

    let (code, _, err) = run(gcx(home.path()).args(["--profile", "nope", "config", "show"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("\"nope\"") && err.contains(".gc/config.toml"),
        "{err}"
    );

    let (code, _, err) = run(gcx(home.path())
        .env("GCX_STORE_GROUP_COMMIT_MAX_ROWS", "many")
        .args(["config", "show"]));
    assert_eq!(code, 2);
    assert!(err.contains("GCX_STORE_GROUP_COMMIT_MAX_ROWS"), "{err}");
}

#[test]
fn json_logs_go_to_stderr() {
    let home = tempfile::tempdir().unwrap();
    // Two synonyms that disagree: the loader's warning is logged once logging is up.
    let (code, out, err) = run(gcx(home.path())
        .env("GCX_CLIENT_ID", "a")
        .env("GENESYS_CLIENT_ID", "b")
        .args([
            "--log-format",
            "json",
            "validate",
            &example("triggers-valid.jsonl"),
        ]));
    assert_eq!(code, 0);
    assert!(!out.contains("GENESYS_CLIENT_ID"), "{out}");
    let line = err
        .lines()
        .find(|l| l.contains("GENESYS_CLIENT_ID is ignored"))
        .unwrap_or_else(|| panic!("no warning in {err}"));
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["level"], "WARN");
}
