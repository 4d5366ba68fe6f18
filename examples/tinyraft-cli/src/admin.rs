//! `tinyraft member add|remove|promote` and `tinyraft transfer-leader`.
//!
//! Each prints what it does on stderr and, on success, one line on stdout: the resulting
//! configuration (`voters=1,2,3,4 learners=-`, plus `outgoing=...` while joint) for the member
//! commands, `leader=ID term=T` for `transfer-leader`. Exit codes are the one-shot commands'
//! (see `main.rs`): 0 done (also when the configuration already was as asked), 3 refused or
//! failed without effect, 4 outcome unknown, 5 setup.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tinyraft::{ConfChange, NodeId, Role};
use tinyraft_std::protocol::MembersView;
use tinyraft_std::{KvClient, MembersOutcome};

use crate::{fail, EXIT_DEFINITE, EXIT_UNKNOWN};

/// A learner counts as caught up once the leader knows its log to match within this many
/// entries of the leader's last one: close enough that promoting it does not leave the new
/// majority waiting for it to copy a backlog (dissertation §4.2.1).
pub(crate) const CAUGHT_UP_ENTRIES: u64 = 100;

fn refuse(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_DEFINITE)
}

/// Prints the configuration an applied change led to, or the leader's current one.
fn print_outcome(c: &mut KvClient, outcome: MembersOutcome) -> ExitCode {
    match outcome {
        MembersOutcome::Applied { index, members } => {
            eprintln!("applied at index {index}");
            print_members(&members)
        }
        MembersOutcome::AlreadySo => {
            eprintln!("the configuration already was so");
            match c.leader_view() {
                Ok(view) => print_members(&view.members),
                Err(e) => fail(&e),
            }
        }
    }
}

fn print_members(m: &MembersView) -> ExitCode {
    println!("{m}");
    ExitCode::SUCCESS
}

/// `member add`: a learner first, then (unless `learner`) a voter once caught up.
pub(crate) fn add(
    c: &mut KvClient,
    id: NodeId,
    addr: SocketAddr,
    learner: bool,
    catch_up: Duration,
) -> ExitCode {
    let view = match c.leader_view() {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    if view.members.is_voter(id) {
        if learner {
            return refuse(&format!(
                "node {id} is a voter; `member add --learner` does not demote"
            ));
        }
        eprintln!("node {id} already is a voter");
        return print_members(&view.members);
    }
    if view.members.is_learner(id) {
        eprintln!("node {id} already is a learner");
    } else {
        match c.change_members(&[ConfChange::AddLearner(id)], &[(id, addr)]) {
            Ok(MembersOutcome::Applied { index, members }) => {
                eprintln!("node {id} added as a learner at index {index}: {members}")
            }
            Ok(MembersOutcome::AlreadySo) => eprintln!("node {id} already is a learner"),
            Err(e) => return fail(&e),
        }
    }
    if learner {
        return match c.leader_view() {
            Ok(view) => print_members(&view.members),
            Err(e) => fail(&e),
        };
    }
    promote_when_caught_up(c, id, catch_up)
}

/// `member promote`.
pub(crate) fn promote(c: &mut KvClient, id: NodeId, catch_up: Duration) -> ExitCode {
    let view = match c.leader_view() {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    if view.members.is_voter(id) {
        eprintln!("node {id} already is a voter");
        return print_members(&view.members);
    }
    if !view.members.is_learner(id) {
        return refuse(&format!(
            "node {id} is not a member (add it with `tinyraft member add`)"
        ));
    }
    promote_when_caught_up(c, id, catch_up)
}

fn promote_when_caught_up(c: &mut KvClient, id: NodeId, catch_up: Duration) -> ExitCode {
    let deadline = Instant::now() + catch_up;
    let mut last_seen = None;
    loop {
        match c.leader_view() {
            Ok(view) => {
                let matched = view.peers.iter().find(|p| p.id == id).map(|p| p.matched);
                match matched {
                    None => {
                        return refuse(&format!("node {id} is no longer a member; not promoted"))
                    }
                    Some(m) if m > 0 && m + CAUGHT_UP_ENTRIES >= view.last_index => {
                        eprintln!(
                            "node {id} caught up: its log matches the leader's to {m} of {}",
                            view.last_index
                        );
                        break;
                    }
                    Some(m) => last_seen = Some((m, view.last_index)),
                }
            }
            Err(e) if !e.is_definite() => return fail(&e),
            Err(_) => {} // No leader right now: keep waiting.
        }
        if Instant::now() >= deadline {
            let seen = last_seen.map_or("nothing known".into(), |(m, last)| {
                format!("its log matches to {m} of {last}")
            });
            return refuse(&format!(
                "node {id} did not catch up within {catch_up:?} ({seen}); it stays a learner \
                 (`tinyraft member promote --id {id}` to try again)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match c.change_members(&[ConfChange::AddVoter(id)], &[]) {
        Ok(outcome) => {
            eprintln!("node {id} promoted to voter");
            print_outcome(c, outcome)
        }
        Err(e) => fail(&e),
    }
}

/// `member remove`.
pub(crate) fn remove(c: &mut KvClient, id: NodeId) -> ExitCode {
    match c.change_members(&[ConfChange::Remove(id)], &[]) {
        Ok(outcome) => {
            eprintln!("node {id} removed");
            print_outcome(c, outcome)
        }
        Err(e) => fail(&e),
    }
}

/// `transfer-leader`: asks the leader, then watches the members' status until `to` leads.
/// The transfer is asked again every second, so a leader that gave up (the target was not
/// ready within an election timeout) or a new leader elected meanwhile tries again.
pub(crate) fn transfer(c: &mut KvClient, to: NodeId) -> ExitCode {
    let deadline = Instant::now() + c.op_timeout;
    let mut asked = None::<Instant>;
    loop {
        if asked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            match c.leader_view() {
                Ok(view) => {
                    for p in &view.peers {
                        if let Some(a) = p.addr {
                            c.add_peer(a);
                        }
                    }
                    if view.id == to {
                        println!("leader={to} term={}", view.term);
                        return ExitCode::SUCCESS;
                    }
                }
                Err(e) if e.is_definite() => return fail(&e),
                Err(_) => {}
            }
            if let Err(e) = c.transfer_leader(to) {
                return fail(&e);
            }
            asked = Some(Instant::now());
        }
        for addr in c.peers().to_vec() {
            if let Ok(s) = c.status(addr) {
                if s.id == to && s.role == Role::Leader {
                    eprintln!("node {to} leads");
                    println!("leader={to} term={}", s.term);
                    return ExitCode::SUCCESS;
                }
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "error: node {to} did not take over within {:?}; it may still",
                c.op_timeout
            );
            return ExitCode::from(EXIT_UNKNOWN);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
