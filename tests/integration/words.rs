//! What users read: dry-run lines and totals in their words, and the JSON
//! reports checked against the schemas published under docs/.

use crate::reports::{deliver, Cli};
use crate::support::TestResult;
use std::path::Path;

/// Fails with every violation when `report` does not match the schema
/// `docs/NAME`.
pub fn assert_matches_schema(name: &str, report: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match {name}:\n{}\n{report:#}",
        errors.join("\n")
    );
}

#[test]
fn a_dry_run_speaks_of_server_and_local_and_totals_what_it_would_do() -> TestResult {
    let cli = Cli::new("")?;
    deliver(&cli, "INBOX", 0..3, 1_500);
    let run = cli.run(&["-v", "sync", "--dry-run"])?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let fetches: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("fetch"))
        .collect();
    assert_eq!(fetches.len(), 3, "{}", run.stdout);
    assert!(
        fetches
            .iter()
            .all(|l| l.contains("server:") && l.contains("-> local")),
        "{}",
        run.stdout
    );
    for word in ["far", "near", "base"] {
        assert!(
            !run.stdout.split_whitespace().any(|w| w.starts_with(word)),
            "`{word}` in the plan:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout
            .contains("  = would download 3 messages, upload 0, change flags on 0, delete 0 ("),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("alice: dry run, nothing changed: would download 3 messages, upload 0"),
        "{}",
        run.stderr
    );
    assert_eq!(cli.server_count("INBOX")?, 3);

    // The real run's JSON report matches the published schema too.
    let synced = cli.run(&["sync", "--report", "json"])?;
    assert_eq!(synced.code, Some(0), "{}", synced.stderr);
    let value: serde_json::Value = serde_json::from_str(&synced.stdout)?;
    assert_matches_schema("report-sync.schema.json", &value);
    assert_eq!(value["dry_run"], false);
    assert_eq!(value["totals"]["fetched"], 3);
    Ok(())
}

#[test]
fn the_schemas_reject_reports_that_drift_from_them() {
    let report = serde_json::json!({
        "schema_version": 2,
        "command": "migrate",
        "exit_code": 0,
        "dry_run": false,
        "accounts": [],
        "version": 1
    });
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/report-migrate.schema.json"))
            .expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    assert!(
        !validator.is_valid(&report),
        "an unknown field must not pass"
    );
    let mut known = report.clone();
    known.as_object_mut().map(|o| o.remove("version"));
    assert!(validator.is_valid(&known));
}
