//! Line mode (`tinyraft client`): one command per stdin line, exactly one JSON object per
//! stdout line, in order, flushed after each.
//!
//! Commands: `get K`, `put K V`, `delete K`, `cas K EXPECTED NEW` (EXPECTED `-` = absent),
//! `scan PREFIX` (`scan` alone: every key). Replies:
//!
//! ```text
//! {"ok":true,"value":"v"}                  get, key present
//! {"ok":true,"value":null}                 get, key absent
//! {"ok":true}                              put; cas that matched
//! {"ok":true,"existed":true}               delete
//! {"ok":true,"pairs":[["k1","v1"],...]}    scan, in key order
//! {"ok":false,"error":"cas_mismatch","value":"cur"}   cas that did not match (value: null if absent)
//! {"ok":false,"error":"timeout","definite":false}     outcome unknown
//! {"ok":false,"error":"<code>","definite":true,...}   refused; did not and will not take effect
//! ```
//!
//! Blank lines are skipped. A line that is not a command gets
//! `{"ok":false,"error":"bad_command","message":...,"definite":true}`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::{json, Value};
use tinyraft_std::{CasOutcome, ClientError, KvClient};

/// Most pairs one `scan` line returns.
pub(crate) const SCAN_PAIRS_MAX: usize = 100_000;

pub(crate) fn run(client: &mut KvClient) -> ExitCode {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = execute(client, &line);
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break; // stdout closed: nobody is listening any more
        }
    }
    ExitCode::SUCCESS
}

fn text(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn error(e: &ClientError) -> Value {
    let mut v = json!({"ok": false, "error": e.code(), "definite": e.is_definite()});
    if !matches!(e, ClientError::Timeout { .. }) {
        v["message"] = Value::String(e.to_string());
    }
    v
}

fn bad(msg: &str) -> Value {
    json!({"ok": false, "error": "bad_command", "message": msg, "definite": true})
}

/// Runs one line and returns its reply.
pub(crate) fn execute(c: &mut KvClient, line: &str) -> Value {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["get", k] => match c.get(k.as_bytes()) {
            Ok(v) => json!({"ok": true, "value": v.as_deref().map(text)}),
            Err(e) => error(&e),
        },
        ["put", k, v] => match c.put(k.as_bytes(), v.as_bytes()) {
            Ok(()) => json!({"ok": true}),
            Err(e) => error(&e),
        },
        ["delete", k] => match c.delete(k.as_bytes()) {
            Ok(existed) => json!({"ok": true, "existed": existed}),
            Err(e) => error(&e),
        },
        ["cas", k, expected, new] => {
            let exp = (*expected != "-").then_some(expected.as_bytes());
            match c.cas(k.as_bytes(), exp, new.as_bytes()) {
                Ok(CasOutcome::Swapped) => json!({"ok": true}),
                Ok(CasOutcome::Mismatch) => {
                    // The store answers a mismatch without the value (so retries can be
                    // answered from the session table); read it now, linearizably.
                    let current = c.get(k.as_bytes()).ok().flatten();
                    json!({"ok": false, "error": "cas_mismatch", "value": current.as_deref().map(text)})
                }
                Err(e) => error(&e),
            }
        }
        ["scan"] | ["scan", _] => {
            let prefix = words.get(1).copied().unwrap_or("");
            match c.scan(prefix.as_bytes(), SCAN_PAIRS_MAX) {
                Ok(pairs) => {
                    let pairs: Vec<Value> = pairs
                        .iter()
                        .map(|(k, v)| Value::Array(vec![text(k), text(v)]))
                        .collect();
                    json!({"ok": true, "pairs": pairs})
                }
                Err(e) => error(&e),
            }
        }
        [cmd, ..] if ["get", "put", "delete", "cas", "scan"].contains(cmd) => {
            bad(&format!("wrong number of arguments for `{cmd}`"))
        }
        _ => bad("unknown command; expected get, put, delete, cas or scan"),
    }
}
