//! The `tinyraft` binary's client contracts, tried as a script would: line mode's JSON, the
//! one-shot commands' output and exit codes, and a node that shrugs off hostile datagrams.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tinyraft_tests::process::{tinyraft_bin, ProcessCluster};

fn line_client(cluster: &ProcessCluster) -> std::process::Child {
    Command::new(tinyraft_bin())
        .args(["client", "--peers", &cluster.peers_arg()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tinyraft client")
}

/// Sends `line`, returns the one JSON object the client prints for it.
fn ask(
    stdin: &mut std::process::ChildStdin,
    stdout: &mut BufReader<std::process::ChildStdout>,
    line: &str,
) -> Value {
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
    let mut out = String::new();
    stdout.read_line(&mut out).expect("a reply line");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("`{line}` -> not JSON ({e}): {out:?}"))
}

#[test]
fn line_mode_speaks_the_documented_json() {
    let cluster = ProcessCluster::start(3, &[]);
    cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("leader");
    let mut child = line_client(&cluster);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut q = |l: &str| ask(&mut stdin, &mut stdout, l);

    assert_eq!(q("get a"), json!({"ok": true, "value": null}));
    assert_eq!(q("put a 1"), json!({"ok": true}));
    assert_eq!(q("get a"), json!({"ok": true, "value": "1"}));
    assert_eq!(q("cas a 1 2"), json!({"ok": true}));
    assert_eq!(
        q("cas a 1 3"),
        json!({"ok": false, "error": "cas_mismatch", "value": "2"})
    );
    assert_eq!(q("cas b - x"), json!({"ok": true}));
    assert_eq!(
        q("cas c z y"),
        json!({"ok": false, "error": "cas_mismatch", "value": null})
    );
    assert_eq!(q("put ab 3"), json!({"ok": true}));
    assert_eq!(
        q("scan a"),
        json!({"ok": true, "pairs": [["a", "2"], ["ab", "3"]]})
    );
    assert_eq!(q("delete a"), json!({"ok": true, "existed": true}));
    assert_eq!(q("delete a"), json!({"ok": true, "existed": false}));
    let long_key = "k".repeat(200);
    let r = q(&format!("put {long_key} v"));
    assert_eq!(
        (r["ok"].clone(), r["error"].clone(), r["definite"].clone()),
        (json!(false), json!("key_too_long"), json!(true))
    );
    let r = q("frobnicate x");
    assert_eq!(
        (r["error"].clone(), r["definite"].clone()),
        (json!("bad_command"), json!(true))
    );
    let r = q("put onlykey");
    assert_eq!(r["error"], json!("bad_command"));
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn line_mode_reports_timeout_as_not_definite_when_no_cluster_answers() {
    // Nobody listens on these ports: every attempt goes unanswered, so a write's outcome is
    // unknown (it might have reached a node whose reply was lost).
    let addrs = tinyraft_tests::process::free_addrs(1);
    let mut child = Command::new(tinyraft_bin())
        .args([
            "client",
            "--peers",
            &addrs[0].to_string(),
            "--timeout-ms",
            "400",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(
        ask(&mut stdin, &mut stdout, "put a 1"),
        json!({"ok": false, "error": "timeout", "definite": false})
    );
    // A read that times out did nothing: definite.
    assert_eq!(
        ask(&mut stdin, &mut stdout, "get a"),
        json!({"ok": false, "error": "timeout", "definite": true})
    );
    drop(stdin);
    child.wait().unwrap();
}

#[test]
fn one_shot_commands_and_exit_codes() {
    let cluster = ProcessCluster::start(3, &[]);
    cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("leader");
    let run = |args: &[&str]| {
        let out = Command::new(tinyraft_bin())
            .args(args)
            .args(["--peers", &cluster.peers_arg()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    assert_eq!(run(&["get", "nope"]).0, Some(1));
    assert_eq!(run(&["put", "k", "v"]), (Some(0), "OK".into()));
    assert_eq!(run(&["get", "k"]), (Some(0), "v".into()));
    assert_eq!(run(&["cas", "k", "zz", "w"]).0, Some(1));
    assert_eq!(run(&["cas", "k", "v", "w"]).0, Some(0));
    assert_eq!(run(&["scan", "k"]), (Some(0), "k\tw".into()));
    assert_eq!(run(&["delete", "k"]).0, Some(0));
    assert_eq!(run(&["put", &"x".repeat(300), "v"]).0, Some(3));
    let (code, table) = run(&["status"]);
    assert_eq!(code, Some(0));
    assert_eq!(table.matches("Leader").count(), 1, "{table}");
    assert_eq!(table.matches("Follower").count(), 2, "{table}");
}

#[test]
fn hostile_datagrams_leave_the_node_serving() {
    let cluster = ProcessCluster::start(3, &[]);
    let leader = cluster
        .wait_for_leader(None, Duration::from_secs(10))
        .expect("leader");
    let target = cluster.addrs[leader as usize - 1];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Garbage, truncated and wrongly keyed frames, a bounded burst at every node.
    let mut c = cluster.client();
    c.put(b"before", b"1").unwrap();
    let valid_looking = {
        let mut v = vec![0xA1, 1];
        v.extend_from_slice(&0x7469_6e79_7261_6674u64.to_be_bytes());
        v.extend_from_slice(&2u64.to_be_bytes());
        v.extend_from_slice(b"payload");
        v.extend_from_slice(&[0u8; 32]); // a tag under the wrong key
        v
    };
    for i in 0..3000usize {
        let junk: Vec<u8> = (0..(i % 300)).map(|j| (i * 31 + j * 7) as u8).collect();
        let addr = cluster.addrs[i % 3];
        let _ = sock.send_to(&junk, addr);
        let _ = sock.send_to(&valid_looking[..valid_looking.len() * (i % 7) / 7], target);
        let _ = sock.send_to(&valid_looking, target);
    }
    let _ = sock.send_to(&vec![0u8; 65_000], target);
    c.put(b"after", b"2").expect("still serving writes");
    assert_eq!(c.get(b"before").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(c.get(b"after").unwrap().as_deref(), Some(&b"2"[..]));
    for &a in &cluster.addrs {
        c.status(a).expect("every node still answers");
    }
}
