//! `deploy/alerts.yml` is valid YAML of Prometheus rule groups, and every expression names only metrics orch exports.

use std::collections::BTreeSet;

use std::time::Duration;

use orch_core::domain::{Agent, JobKind};
use orch_core::ports::{AgentOutcome, InboxStats, QueueSnapshot, Source};
use orch_core::time::Timestamp;
use orch_http::{DeliveryOutcome, JobOutcome, Metrics, SignatureFailure};
use yaml_rust2::YamlLoader;

use crate::repo_root;

/// Series Prometheus itself makes for every scrape target.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// PromQL's aggregation operators, which may take `by (…)` before their parentheses.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// PromQL words that are not series names.
const KEYWORDS: [&str; 11] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
];

/// Every series name orch's registry exports, from the `# TYPE` lines of its text format,
/// after every kind of sample was recorded once (a family shows only once it has one).
fn exported_series() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics.count_delivery(Source::Plane, DeliveryOutcome::Queued);
    metrics.count_signature_failure(Source::Gitea, SignatureFailure::Mismatch);
    metrics.observe_ingest(Source::Plane, Duration::from_millis(2));
    metrics.count_job(JobKind::Agent(Agent::Developer), JobOutcome::Succeeded);
    metrics.count_reconcile_run(1, 0);
    metrics.set_reconcile_success(1_764_820_000.0);
    metrics.add_api_calls("plane.example.com", 3, 1);
    metrics.observe_agent_run(
        Agent::Developer,
        &AgentOutcome::Succeeded,
        Duration::from_secs(90),
    );
    metrics.set_store_gauges(
        &QueueSnapshot::default(),
        &InboxStats::default(),
        Timestamp::from_millis(0),
    );
    let text = metrics.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let series: Vec<String> = match kind {
            "counter" => vec![format!("{name}_total"), format!("{name}_created")],
            "histogram" => ["_bucket", "_sum", "_count", "_created"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect(),
            "info" => vec![format!("{name}_info")],
            _ => vec![name.to_owned()],
        };
        names.extend(series);
    }
    names
}

/// The series names an expression reads: identifiers that are not functions, keywords,
/// label names (inside `{}` or after `by`/`without`/`on`/`ignoring`/`group_*`) or durations.
fn series_in(expr: &str) -> BTreeSet<String> {
    // Drop strings, label matchers and range selectors.
    let mut plain = String::new();
    let mut depth_braces = 0;
    let mut in_string = false;
    let mut in_range = false;
    for c in expr.chars() {
        match c {
            '"' if depth_braces == 0 => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            _ if depth_braces > 0 => {}
            '[' => in_range = true,
            ']' => in_range = false,
            _ if in_range => {}
            _ => plain.push(c),
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut index = 0;
    let mut skip_group = false;
    while index < chars.len() {
        let c = chars[index];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = index;
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric()
                    || chars[index] == '_'
                    || chars[index] == ':')
            {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let next = chars[index..].iter().find(|c| !c.is_whitespace());
            if KEYWORDS.contains(&word.as_str()) {
                skip_group = word != "and" && word != "or" && word != "unless" && word != "bool";
                continue;
            }
            if next == Some(&'(') || AGGREGATIONS.contains(&word.as_str()) {
                continue;
            }
            names.insert(word);
        } else if c == '(' && skip_group {
            // The label list of by/without/on/ignoring/group_*: skip to its ')'.
            while index < chars.len() && chars[index] != ')' {
                index += 1;
            }
            skip_group = false;
            index += 1;
        } else {
            if c.is_ascii_digit() {
                // A number or a duration such as 5m: skip it whole.
                while index < chars.len() && chars[index].is_ascii_alphanumeric() {
                    index += 1;
                }
                continue;
            }
            index += 1;
        }
    }
    names
}

#[test]
fn series_are_found_in_promql_without_functions_labels_or_keywords() {
    let found = series_in(
        r#"time() - (orch_a_seconds > 0 or orch_b{job="x", y=~"a|b"}) > 900 and on (instance) max by (service) (rate(orch_c_total[5m])) / orch_d"#,
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["orch_a_seconds", "orch_b", "orch_c_total", "orch_d"]
    );
}

#[test]
fn every_alert_rule_reads_only_series_orch_exports() {
    let text = std::fs::read_to_string(repo_root().join("deploy/alerts.yml")).expect("alerts.yml");
    let docs = YamlLoader::load_from_str(&text).expect("deploy/alerts.yml is YAML");
    assert_eq!(docs.len(), 1, "one document");
    let exported = exported_series();
    for required in [
        "orch_build_info",
        "orch_process_cpu_seconds_total",
        "orch_process_resident_memory_bytes",
        "orch_process_open_fds",
        "orch_agent_run_seconds_bucket",
        "orch_reconcile_last_success_timestamp_seconds",
        "orch_service_degraded",
        "orch_tasks_blocked",
    ] {
        assert!(exported.contains(required), "{required} in {exported:?}");
    }
    let groups = docs[0]["groups"].as_vec().expect("a list of groups");
    let mut alerts = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "every group is named");
        for rule in group["rules"].as_vec().expect("a list of rules") {
            let alert = rule["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned();
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            for field in ["summary", "description"] {
                assert!(
                    rule["annotations"][field].as_str().is_some(),
                    "{alert} has a {field}"
                );
            }
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{alert} has a severity"
            );
            assert!(
                rule["for"].as_str().is_some(),
                "{alert} waits before firing"
            );
            let series = series_in(expr);
            assert!(!series.is_empty(), "{alert} reads a series");
            for name in &series {
                assert!(
                    exported.contains(name) || PROMETHEUS_SERIES.contains(&name.as_str()),
                    "{alert}: {name} is not a series orch exports"
                );
            }
            alerts.push(alert);
        }
    }
    for required in [
        "OrchDown",
        "OrchReconcileStale",
        "OrchTasksBlocked",
        "OrchServiceDegraded",
    ] {
        assert!(
            alerts.iter().any(|alert| alert == required),
            "{required} in {alerts:?}"
        );
    }
}
