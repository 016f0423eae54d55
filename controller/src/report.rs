//! Presenting results: a table for people, one JSON document for scripts.
//!
//! Every piece of text that came from an agent goes through [`sanitize`] before it reaches the
//! terminal: a compromised or buggy lab machine must not be able to send escape sequences
//! to the administrator's terminal.

use lightsout_protocol::response::CancelReply;
use lightsout_protocol::{Health, Outcome, PowerReply, Reply};
use serde_json::{Value, json};

use crate::duration::human;
use crate::fanout::HostResult;

/// Replaces control characters (C0, C1, DEL) and Unicode bidirectional overrides with `?`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
            if c.is_control() || bidi { '?' } else { c }
        })
        .collect()
}

/// Shell-like rendering of an argv for display (quotes around arguments with spaces).
pub fn show_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let a = sanitize(a);
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn power_detail(p: &PowerReply) -> String {
    let when = if p.delay_secs == 0 {
        "now".to_string()
    } else {
        format!("in {}", human(p.delay_secs))
    };
    let wait = if p.agent_wait_secs > 0 {
        format!(" after the agent waits {}s,", p.agent_wait_secs)
    } else {
        String::new()
    };
    if p.dry_run {
        format!(
            "dry run: {} {when};{wait} would run `{}`",
            p.action,
            show_argv(&p.argv)
        )
    } else {
        format!(
            "{} accepted, {when};{wait} runs `{}`",
            p.action,
            show_argv(&p.argv)
        )
    }
}

fn cancel_detail(c: &CancelReply) -> String {
    let what = match &c.cancelled {
        Some(p) => format!(
            "cancelled pending {} (request {})",
            p.action,
            sanitize(&p.request_id)
        ),
        None => "nothing was pending here".to_string(),
    };
    if c.dry_run {
        format!("dry run: {what}; would run `{}`", show_argv(&c.argv))
    } else {
        let exit = c
            .exit_code
            .map_or_else(String::new, |code| format!(" (exit {code})"));
        format!("{what}; ran `{}`{exit}", show_argv(&c.argv))
    }
}

fn echo_detail(payload: &str, h: &Health) -> String {
    let users = h
        .logged_in_users
        .map_or_else(|| "users ?".into(), |u| format!("{u} users"));
    let mut flags = Vec::new();
    if h.dry_run {
        flags.push("dry-run");
    }
    if !h.privileged {
        flags.push("unprivileged");
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(", {}", flags.join(", "))
    };
    format!(
        "{:?} from {} (up {}, load {:.2}, {users}{flags})",
        sanitize(payload),
        sanitize(&h.hostname),
        human(h.uptime_secs),
        h.load_avg[0],
    )
}

/// One line of detail for a host.
pub fn detail(result: &HostResult) -> String {
    match &result.outcome {
        Err(e) => sanitize(&e.to_string()),
        Ok(response) => match &response.outcome {
            Outcome::Error(e) => format!("{}: {}", e.kind, sanitize(&e.message)),
            Outcome::Ok(Reply::Echo { payload, health }) => echo_detail(payload, health),
            Outcome::Ok(Reply::Shutdown(p) | Reply::Restart(p)) => power_detail(p),
            Outcome::Ok(Reply::Cancel(c)) => cancel_detail(c),
        },
    }
}

fn elapsed(result: &HostResult) -> String {
    let ms = result.elapsed.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// The human table, one row per host in the order given, then a summary line.
pub fn table(results: &[HostResult]) -> String {
    let hosts: Vec<String> = results
        .iter()
        .map(|r| sanitize(&r.target.to_string()))
        .collect();
    let width = hosts
        .iter()
        .map(|h| h.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<6}  {:>7}  DETAIL\n",
        "HOST", "STATUS", "TIME"
    );
    for (r, host) in results.iter().zip(&hosts) {
        let status = if r.ok() { "ok" } else { "FAILED" };
        out.push_str(&format!(
            "{host:<width$}  {status:<6}  {:>7}  {}\n",
            elapsed(r),
            detail(r)
        ));
    }
    out.push_str(&summary(results));
    out.push('\n');
    out
}

/// `N ok, N failed`.
pub fn summary(results: &[HostResult]) -> String {
    let ok = results.iter().filter(|r| r.ok()).count();
    format!("{ok} ok, {} failed", results.len() - ok)
}

/// The `--json` document: one object per host, plus counts.
pub fn json(command: &str, results: &[HostResult]) -> Value {
    let hosts: Vec<Value> = results.iter().map(host_json).collect();
    let ok = results.iter().filter(|r| r.ok()).count();
    json!({
        "command": command,
        "results": hosts,
        "summary": { "total": results.len(), "ok": ok, "failed": results.len() - ok },
    })
}

/// One host's JSON object: `target`, `ok`, `elapsed_ms`, and `response` or `error`.
pub fn host_json(r: &HostResult) -> Value {
    let mut obj = json!({
        "target": r.target.to_string(),
        "ok": r.ok(),
        "elapsed_ms": (r.elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
    });
    match &r.outcome {
        Err(e) => {
            obj["error"] =
                json!({ "kind": e.kind(), "message": e.to_string(), "source": "controller" })
        }
        Ok(response) => {
            obj["request_id"] = json!(response.id);
            match &response.outcome {
                Outcome::Ok(reply) => {
                    obj["response"] = serde_json::to_value(reply).unwrap_or(Value::Null)
                }
                Outcome::Error(e) => {
                    obj["error"] =
                        json!({ "kind": e.kind.as_str(), "message": e.message, "source": "agent" });
                    if let Some(p) = &e.pending {
                        obj["error"]["pending"] = serde_json::to_value(p).unwrap_or(Value::Null);
                    }
                }
            }
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_escapes() {
        assert_eq!(sanitize("lab\u{1b}[2J01\r\n\u{7}"), "lab?[2J01???");
        assert_eq!(sanitize("a\u{9b}b\u{202e}c"), "a?b?c");
        assert_eq!(sanitize("ok-host_é"), "ok-host_é");
    }

    #[test]
    fn argv_display_quotes_spaces() {
        let argv: Vec<String> = ["shutdown", "-h", "+5", "Lab closes now"]
            .map(String::from)
            .to_vec();
        assert_eq!(show_argv(&argv), "shutdown -h +5 'Lab closes now'");
    }
}
