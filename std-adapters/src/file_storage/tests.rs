//! Tests of `FileStorage` through its public behaviour and the real open/recovery path.
//! Damage is made on disk with the helpers of `fault.rs`, or injected with a `FaultInjector`.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tinyraft::{EntryKind, StorageError, StorageErrorKind};

use super::*;

fn e(index: Index, term: Term, data: &[u8]) -> Entry<'_> {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data,
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("entry-{i};")
        .repeat((i % 7) as usize + 1)
        .into_bytes()
}

fn open(dir: &Path) -> FileStorage {
    FileStorage::open(dir, FileStorageOptions::new()).unwrap()
}

fn open_with(dir: &Path, segment_bytes: u64) -> FileStorage {
    FileStorage::open(dir, FileStorageOptions::new().segment_bytes(segment_bytes)).unwrap()
}

fn open_err(dir: &Path) -> FileStorageError {
    match FileStorage::open(dir, FileStorageOptions::new()) {
        Ok(s) => panic!(
            "open succeeded with log {}..={}",
            s.first_index(),
            s.last_index()
        ),
        Err(e) => e,
    }
}

/// Every entry in `lo..hi` as (index, term, data).
fn read(s: &FileStorage, lo: Index, hi: Index) -> Vec<(Index, Term, Vec<u8>)> {
    let mut out = Vec::new();
    s.entries(lo, hi, usize::MAX, &mut |e| {
        out.push((e.index, e.term, e.data.to_vec()));
        true
    })
    .unwrap();
    out
}

fn read_all(s: &FileStorage) -> Vec<(Index, Term, Vec<u8>)> {
    read(s, s.first_index(), s.last_index() + 1)
}

/// Appends `lo..=hi` with term `term` and the standard payloads.
fn append_range(s: &mut FileStorage, lo: Index, hi: Index, term: Term) {
    for i in lo..=hi {
        s.append(e(i, term, &payload(i))).unwrap();
    }
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path) -> TempDir {
    let to = TempDir::new().unwrap();
    for item in fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        fs::copy(item.path(), to.path().join(item.file_name())).unwrap();
    }
    to
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

#[test]
fn roundtrip_and_reopen() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    assert_eq!((s.first_index(), s.last_index()), (1, 0));
    assert_eq!(s.term(0).unwrap(), 0);
    append_range(&mut s, 1, 50, 1);
    append_range(&mut s, 51, 100, 2);
    // Readable before sync, from the write buffer.
    assert_eq!(read(&s, 49, 52)[2], (51, 2, payload(51)));
    s.set_hard_state(&HardState {
        term: 2,
        vote: Some(3),
        commit: 90,
    })
    .unwrap();
    s.sync().unwrap();
    let before = read_all(&s);
    assert_eq!(before.len(), 100);
    drop(s);

    let s = open(dir.path());
    assert_eq!((s.first_index(), s.last_index()), (1, 100));
    assert_eq!(read_all(&s), before);
    assert_eq!(s.term(50).unwrap(), 1);
    assert_eq!(s.term(51).unwrap(), 2);
    let init = s.initial_state().unwrap();
    assert_eq!(
        init.hard_state,
        HardState {
            term: 2,
            vote: Some(3),
            commit: 90
        }
    );
    assert_eq!(init.membership, None);
    assert_eq!(s.recovery_report().torn_tail, None);
}

#[test]
fn entry_kinds_and_empty_and_largest_payloads_roundtrip() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    let big = vec![0xab; tinyraft::limits::ENTRY_DATA_BYTES_MAX];
    s.append(e(1, 1, b"")).unwrap();
    s.append(Entry {
        term: 1,
        index: 2,
        kind: EntryKind::Config,
        data: b"cfg",
    })
    .unwrap();
    s.append(e(3, 1, &big)).unwrap();
    let too_big = vec![0; tinyraft::limits::ENTRY_DATA_BYTES_MAX + 1];
    let err = s.append(e(4, 1, &too_big)).unwrap_err();
    assert!(
        matches!(err, FileStorageError::EntryTooLarge { .. }),
        "{err}"
    );
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path());
    let mut kinds = Vec::new();
    s.entries(1, 4, usize::MAX, &mut |e| {
        kinds.push((e.kind, e.data.len()));
        true
    })
    .unwrap();
    assert_eq!(
        kinds,
        vec![
            (EntryKind::Normal, 0),
            (EntryKind::Config, 3),
            (EntryKind::Normal, big.len())
        ]
    );
}

#[test]
fn unsynced_appends_are_lost_like_in_a_crash() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 5, 1);
    s.sync().unwrap();
    append_range(&mut s, 6, 9, 1);
    s.set_hard_state(&HardState {
        term: 4,
        vote: None,
        commit: 0,
    })
    .unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.last_index(), 5);
    assert_eq!(s.hard_state(), HardState::default());
}

#[test]
fn append_checks_indexes() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 3, 1);
    let err = s.append(e(5, 1, b"")).unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Unavailable);
    let err = s.append(e(0, 1, b"")).unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Unavailable);
}

#[test]
fn conflict_truncation_of_synced_entries_survives_reopen() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 10, 1);
    s.sync().unwrap();
    s.append(e(5, 2, b"five")).unwrap();
    s.append(e(6, 2, b"six")).unwrap();
    assert_eq!(s.last_index(), 6);
    assert_eq!(s.term(7).unwrap_err().kind(), StorageErrorKind::Unavailable);
    s.sync().unwrap();
    drop(s);

    let s = open(dir.path());
    assert_eq!(s.last_index(), 6);
    let all = read_all(&s);
    assert_eq!(all[3], (4, 1, payload(4)));
    assert_eq!(all[4], (5, 2, b"five".to_vec()));
    assert_eq!(all[5], (6, 2, b"six".to_vec()));
}

#[test]
fn conflict_truncation_inside_the_write_buffer_survives_reopen() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 4, 1);
    s.sync().unwrap();
    // Pending 5..=9, then a conflict at 7 (inside the buffer), then one at 3 (reaching into
    // synced entries and removing every pending one), then more.
    append_range(&mut s, 5, 9, 1);
    s.append(e(7, 2, b"7b")).unwrap();
    s.append(e(8, 2, b"8b")).unwrap();
    assert_eq!(read(&s, 6, 9)[1], (7, 2, b"7b".to_vec()));
    s.append(e(3, 3, b"3c")).unwrap();
    s.append(e(4, 3, b"4c")).unwrap();
    s.append(e(5, 3, b"5c")).unwrap();
    s.append(e(5, 4, b"5d")).unwrap();
    let want = vec![
        (1, 1, payload(1)),
        (2, 1, payload(2)),
        (3, 3, b"3c".to_vec()),
        (4, 3, b"4c".to_vec()),
        (5, 4, b"5d".to_vec()),
    ];
    assert_eq!(read_all(&s), want);
    let before = s.stats();
    s.sync().unwrap();
    assert_eq!(read_all(&s), want);
    // Records of replaced pending entries were cut from the buffer, never written.
    let after = s.stats();
    assert_eq!(after.entries_written - before.entries_written, 3);
    assert_eq!(
        after.log_bytes_written - before.log_bytes_written,
        (record::BATCH_RECORD_LEN + 3 * (record::ENTRY_RECORD_OVERHEAD + 2)) as u64
    );
    drop(s);
    let s = open(dir.path());
    assert_eq!(read_all(&s), want);
}

#[test]
fn entries_follow_the_byte_limit_rule() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    for i in 1..=5 {
        s.append(e(i, 1, b"0123456789")).unwrap();
    }
    s.sync().unwrap();
    let count = |s: &FileStorage, lo, hi, max| {
        let mut n = 0;
        s.entries(lo, hi, max, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        n
    };
    assert_eq!(count(&s, 1, 6, 0), 1);
    assert_eq!(count(&s, 2, 6, 25), 3);
    assert_eq!(count(&s, 3, 3, 0), 0);
    let mut n = 0;
    s.entries(1, 6, usize::MAX, &mut |_| {
        n += 1;
        n < 2
    })
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        s.entries(1, 7, 100, &mut |_| true).unwrap_err().kind(),
        StorageErrorKind::Unavailable
    );
    // Reading from inside `visit` works (it must not trip over the shared read buffer).
    let mut inner = Vec::new();
    s.entries(1, 3, usize::MAX, &mut |outer| {
        s.entries(4, 6, usize::MAX, &mut |x| {
            inner.push((outer.index, x.index));
            true
        })
        .unwrap();
        true
    })
    .unwrap();
    assert_eq!(inner, vec![(1, 4), (1, 5), (2, 4), (2, 5)]);
}

/// Builds a log whose last record (entry 4) was written alone by the last sync. Returns the
/// segment path and its length before and after that sync.
fn log_with_lone_last_record(dir: &Path) -> (PathBuf, u64, u64) {
    let mut s = open(dir);
    append_range(&mut s, 1, 2, 1);
    s.sync().unwrap();
    append_range(&mut s, 3, 3, 1);
    s.sync().unwrap();
    let before = s.log_bytes();
    s.append(e(4, 2, b"the last record")).unwrap();
    s.sync().unwrap();
    let after = s.log_bytes();
    let paths = segment_paths(dir);
    assert_eq!(paths.len(), 1);
    (paths[0].clone(), before, after)
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_cut_to_the_previous_record() {
    let template = TempDir::new().unwrap();
    let (seg, before, after) = log_with_lone_last_record(template.path());
    let name = seg.file_name().unwrap().to_owned();
    assert!(after > before + 30);
    for cut in before..after {
        let dir = copy_dir(template.path());
        let seg = dir.path().join(&name);
        set_file_len(&seg, cut).unwrap();
        let mut s = open(dir.path());
        assert_eq!(s.last_index(), 3, "cut at {cut}");
        assert_eq!(read_all(&s)[2], (3, 1, payload(3)), "cut at {cut}");
        let torn = s.recovery_report().torn_tail.clone();
        if cut == before {
            assert_eq!(torn, None);
        } else {
            assert_eq!(
                torn,
                Some(TornTail {
                    path: seg.clone(),
                    offset: before,
                    bytes_dropped: cut - before
                }),
                "cut at {cut}"
            );
        }
        assert_eq!(file_len(&seg), before);
        // The log goes on from the cut and the result survives another reopen.
        s.append(e(4, 3, b"again")).unwrap();
        s.sync().unwrap();
        drop(s);
        let s = open(dir.path());
        assert_eq!(read(&s, 4, 5), vec![(4, 3, b"again".to_vec())]);
        assert_eq!(s.recovery_report().torn_tail, None);
    }
}

#[test]
fn zeros_after_the_last_record_are_a_torn_tail() {
    // What a crash leaves when the new file size reached the disk but the data did not.
    let dir = TempDir::new().unwrap();
    let (seg, _, after) = log_with_lone_last_record(dir.path());
    set_file_len(&seg, after + 4096).unwrap();
    let s = open(dir.path());
    assert_eq!(s.last_index(), 4);
    assert_eq!(
        s.recovery_report()
            .torn_tail
            .as_ref()
            .unwrap()
            .bytes_dropped,
        4096
    );
    assert_eq!(file_len(&seg), after);
}

#[test]
fn a_torn_batch_is_dropped_whole() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 4, 1);
    s.sync().unwrap();
    let before = s.log_bytes();
    append_range(&mut s, 5, 8, 1);
    s.sync().unwrap();
    let after = s.log_bytes();
    drop(s);
    let seg = &segment_paths(dir.path())[0];
    // Keep entries 5 and 6 whole, cut inside 7: nothing of the batch may survive, since the
    // sync that wrote it never returned.
    set_file_len(seg, (before + after) / 2 + 20).unwrap();
    let s = open(dir.path());
    assert_eq!(s.last_index(), 4);
}

#[test]
fn a_crash_in_the_middle_of_a_write_loses_only_that_batch() {
    for keep in [0, 1, 8, 33, 40, 70, 150] {
        let dir = TempDir::new().unwrap();
        let faults = FaultInjector::new();
        let mut s = FileStorage::open(dir.path(), FileStorageOptions::new().faults(faults.clone()))
            .unwrap();
        append_range(&mut s, 1, 3, 1);
        s.sync().unwrap();
        append_range(&mut s, 4, 9, 1);
        faults.crash_during_next_write(keep);
        let err = s.sync().unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Io);
        assert!(s.poisoned().is_some());
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.last_index(), 3, "keep {keep}");
        assert_eq!(s.recovery_report().torn_tail.is_some(), keep > 0);
    }
}

#[test]
fn a_crash_while_creating_a_segment_leaves_a_temp_file_that_is_removed() {
    let dir = TempDir::new().unwrap();
    let faults = FaultInjector::new();
    let opts = FileStorageOptions::new()
        .segment_bytes(1)
        .faults(faults.clone());
    let mut s = FileStorage::open(dir.path(), opts).unwrap();
    append_range(&mut s, 1, 3, 1);
    s.sync().unwrap();
    append_range(&mut s, 4, 5, 1);
    faults.crash_during_next_write(10);
    assert!(s.sync().is_err());
    drop(s);
    assert!(fs::read_dir(dir.path()).unwrap().any(|d| d
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".log.tmp")));
    let s = open(dir.path());
    assert_eq!(s.last_index(), 3);
    assert_eq!(s.recovery_report().leftovers_removed, 1);
    assert_eq!(segment_paths(dir.path()).len(), 1);
}

/// Five syncs of one entry each; returns the segment path and each entry's record offset.
fn five_batches(dir: &Path) -> (PathBuf, Vec<u64>) {
    let mut s = open(dir);
    let mut offsets = Vec::new();
    for i in 1..=5 {
        s.append(e(i, 1, &payload(i))).unwrap();
        s.sync().unwrap();
        offsets.push(s.locs[(i - 1) as usize].off);
    }
    (segment_paths(dir)[0].clone(), offsets)
}

fn assert_corrupt_at(err: &FileStorageError, path: &Path, offset: u64) {
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    let msg = err.to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*name), "message lacks the file name: {msg}");
    assert!(
        msg.contains(&format!("offset {offset}")),
        "message lacks offset {offset}: {msg}"
    );
}

#[test]
fn a_bit_flip_in_a_middle_record_is_refused_with_file_and_offset() {
    let template = TempDir::new().unwrap();
    let (seg, offsets) = five_batches(template.path());
    let name = seg.file_name().unwrap().to_owned();
    // In the payload, the CRC, the length and the index of entry 2.
    for delta in [30, 5, 1, 12] {
        let dir = copy_dir(template.path());
        let seg = dir.path().join(&name);
        flip_bit(&seg, offsets[1] + delta, 3).unwrap();
        let err = open_err(dir.path());
        assert_corrupt_at(&err, &seg, offsets[1]);
        assert!(err.to_string().contains("synced"), "{err}");
        // The file was not touched: nothing was "repaired" away.
        assert_eq!(file_len(&seg), file_len(&template.path().join(&name)));
    }
}

#[test]
fn a_damaged_batch_header_followed_by_later_batches_is_refused() {
    let dir = TempDir::new().unwrap();
    let (seg, offsets) = five_batches(dir.path());
    // The batch header of entry 3's batch sits just before its record.
    let header_at = offsets[2] - record::BATCH_RECORD_LEN as u64;
    flip_bit(&seg, header_at + 10, 0).unwrap();
    let err = open_err(dir.path());
    assert_corrupt_at(&err, &seg, header_at);
    assert!(
        err.to_string().contains("valid batch starts later"),
        "{err}"
    );
}

#[test]
fn a_bit_flip_in_the_last_batch_counts_as_a_torn_write() {
    // The documented limitation: the last batch alone cannot prove it was synced.
    let dir = TempDir::new().unwrap();
    let (seg, offsets) = five_batches(dir.path());
    flip_bit(&seg, offsets[4] + 30, 1).unwrap();
    let s = open(dir.path());
    assert_eq!(s.last_index(), 4);
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_refused() {
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 200);
    for i in 1..=30 {
        s.append(e(i, 1, &payload(i))).unwrap();
        s.sync().unwrap();
    }
    assert!(s.segment_count() >= 3);
    drop(s);
    let segs = segment_paths(dir.path());
    // Cutting the end off the first segment (a "torn tail" anywhere but the last segment).
    let first = &segs[0];
    let len = file_len(first);
    set_file_len(first, len - 3).unwrap();
    let err = open_err(dir.path());
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    assert!(err
        .to_string()
        .contains(&*first.file_name().unwrap().to_string_lossy()));
}

#[test]
fn a_missing_or_bad_segment_is_refused() {
    let template = TempDir::new().unwrap();
    let mut s = open_with(template.path(), 100);
    for i in 1..=20 {
        s.append(e(i, 1, &payload(i))).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    let segs = segment_paths(template.path());
    assert!(segs.len() >= 3);
    let name = |p: &PathBuf| p.file_name().unwrap().to_owned();

    let dir = copy_dir(template.path());
    fs::remove_file(dir.path().join(name(&segs[1]))).unwrap();
    let err = open_err(dir.path());
    assert_corrupt_at(&err, &dir.path().join(name(&segs[1])), 0);
    assert!(err.to_string().contains("missing"));

    // A bad header is corruption even in the last segment: segments appear atomically.
    let dir = copy_dir(template.path());
    let last = dir.path().join(name(segs.last().unwrap()));
    flip_bit(&last, 3, 0).unwrap();
    assert_corrupt_at(&open_err(dir.path()), &last, 0);

    // A segment renamed to another number.
    let dir = copy_dir(template.path());
    let last = dir.path().join(name(segs.last().unwrap()));
    let renamed = dir
        .path()
        .join(segment::segment_file_name(segs.len() as u64 + 1));
    fs::copy(&last, &renamed).unwrap();
    let err = open_err(dir.path());
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
}

#[test]
fn a_failed_fdatasync_poisons_the_storage() {
    let dir = TempDir::new().unwrap();
    let faults = FaultInjector::new();
    let mut s =
        FileStorage::open(dir.path(), FileStorageOptions::new().faults(faults.clone())).unwrap();
    append_range(&mut s, 1, 3, 1);
    s.sync().unwrap();
    append_range(&mut s, 4, 6, 1);
    faults.fail_next_log_sync();
    let err = s.sync().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Io);
    assert!(err.to_string().contains("fdatasync"), "{err}");
    assert!(s.poisoned().unwrap().contains("fdatasync"));
    // Every later write refuses, even though the fault is gone.
    for err in [
        s.append(e(7, 1, b"x")).unwrap_err(),
        s.set_hard_state(&HardState::default()).unwrap_err(),
        s.sync().unwrap_err(),
        s.begin_snapshot(&SnapshotMeta::default()).unwrap_err(),
        s.write_snapshot(b"x").unwrap_err(),
        s.finish_snapshot().unwrap_err(),
    ] {
        assert!(matches!(err, FileStorageError::Poisoned { .. }), "{err}");
        assert_eq!(err.kind(), StorageErrorKind::Io);
        assert!(err.to_string().contains("reopened"), "{err}");
    }
    // Reads of what was synced still work.
    assert_eq!(read(&s, 1, 4).len(), 3);
    drop(s);
    // Reopening starts afresh from what is on disk.
    let mut s = open(dir.path());
    assert!(s.last_index() >= 3);
    assert_eq!(read(&s, 1, 4)[2], (3, 1, payload(3)));
    let next = s.last_index() + 1;
    s.append(e(next, 2, b"ok")).unwrap();
    s.sync().unwrap();
}

#[test]
fn a_failed_fsync_of_the_hard_state_poisons_the_storage() {
    let dir = TempDir::new().unwrap();
    let faults = FaultInjector::new();
    let mut s =
        FileStorage::open(dir.path(), FileStorageOptions::new().faults(faults.clone())).unwrap();
    s.set_hard_state(&HardState {
        term: 1,
        vote: Some(1),
        commit: 0,
    })
    .unwrap();
    faults.fail_next_meta_sync();
    let err = s.sync().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Io);
    assert!(s.poisoned().is_some());
    assert!(s.sync().is_err());
    drop(s);
    // The old hard state still stands (the temp file never replaced it).
    let s = open(dir.path());
    assert_eq!(s.hard_state(), HardState::default());
}

#[test]
fn a_failed_write_is_rolled_back_and_can_be_retried() {
    let dir = TempDir::new().unwrap();
    let faults = FaultInjector::new();
    let mut s =
        FileStorage::open(dir.path(), FileStorageOptions::new().faults(faults.clone())).unwrap();
    append_range(&mut s, 1, 3, 1);
    s.sync().unwrap();
    let synced = s.log_bytes();
    append_range(&mut s, 4, 6, 1);
    faults.fill_disk_on_next_write();
    let err = s.sync().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Full, "{err}");
    faults.fail_next_write();
    assert_eq!(s.sync().unwrap_err().kind(), StorageErrorKind::Io);
    assert!(s.poisoned().is_none());
    assert_eq!(file_len(&segment_paths(dir.path())[0]), synced);
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.last_index(), 6);
    assert_eq!(s.recovery_report().torn_tail, None);
}

#[test]
fn hard_state_survives_reopen_and_a_torn_temp_file_is_ignored() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 10, 3);
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 7,
    };
    s.set_hard_state(&hs).unwrap();
    s.sync().unwrap();
    drop(s);
    // An interrupted replacement: a half-written temp file next to the real one.
    fs::write(
        dir.path().join("hard-state.tmp"),
        b"tnyrfhst\x01\x00garbage",
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
    let s = open(dir.path());
    assert_eq!(s.hard_state(), hs);
    assert!(!dir.path().join("hard-state.tmp").exists());
    assert!(
        dir.path().join("notes.txt").exists(),
        "unknown files are left alone"
    );
    assert_eq!(s.recovery_report().leftovers_removed, 1);
}

#[test]
fn commit_rides_in_the_log_and_never_exceeds_the_last_index() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 10, 1);
    let hs = |commit| HardState {
        term: 1,
        vote: Some(1),
        commit,
    };
    s.set_hard_state(&hs(2)).unwrap();
    s.sync().unwrap();
    // Only the commit index moves: no I/O at all; it is written with the next batch.
    let st = s.stats();
    s.set_hard_state(&hs(9)).unwrap();
    s.sync().unwrap();
    assert_eq!(s.stats(), st);
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(s.hard_state().commit, 2);
    s.set_hard_state(&hs(9)).unwrap();
    s.append(e(11, 1, b"x")).unwrap();
    s.sync().unwrap();
    assert_eq!(s.stats().log_fsyncs, 1);
    assert_eq!(s.stats().meta_fsyncs, 0);
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(s.hard_state().commit, 9);
    // A commit index beyond the log (which a torn tail can produce) is capped on open.
    s.set_hard_state(&hs(50)).unwrap();
    s.append(e(12, 1, b"y")).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.hard_state().commit, 12);
}

#[test]
fn a_new_directory_is_created_and_made_durable() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("a").join("b");
    let s = FileStorage::open(&dir, FileStorageOptions::new()).unwrap();
    assert!(dir.is_dir());
    assert_eq!(s.stats().meta_fsyncs, 1);
    drop(s);
    let s = FileStorage::open(&dir, FileStorageOptions::new()).unwrap();
    assert_eq!(s.stats().meta_fsyncs, 0);
}

#[test]
fn file_storage_can_move_to_another_thread() {
    fn is_send<T: Send>() {}
    is_send::<FileStorage>();
    is_send::<FileStorageError>();
}

#[test]
fn a_corrupt_hard_state_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    s.set_hard_state(&HardState {
        term: 5,
        vote: None,
        commit: 0,
    })
    .unwrap();
    s.sync().unwrap();
    drop(s);
    let path = dir.path().join("hard-state");
    flip_bit(&path, 14, 2).unwrap();
    let err = open_err(dir.path());
    assert_corrupt_at(&err, &path, 0);
    fs::write(&path, vec![7u8; 100_000]).unwrap();
    assert_eq!(open_err(dir.path()).kind(), StorageErrorKind::Corrupt);
}

#[test]
fn group_commit_is_one_fdatasync_per_sync_whatever_the_entry_count() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    s.append(e(1, 1, b"first")).unwrap();
    s.sync().unwrap();
    let mut next = 2;
    for n in [1u64, 10, 1000] {
        let before = s.stats();
        for _ in 0..n {
            s.append(e(next, 1, &payload(next))).unwrap();
            next += 1;
        }
        s.set_hard_state(&HardState {
            term: 0,
            vote: None,
            commit: next - 2,
        })
        .unwrap();
        s.sync().unwrap();
        let after = s.stats();
        assert_eq!(after.log_fsyncs - before.log_fsyncs, 1, "{n} entries");
        assert_eq!(after.meta_fsyncs, before.meta_fsyncs, "{n} entries");
        assert_eq!(after.syncs - before.syncs, 1);
        assert_eq!(after.batches_written - before.batches_written, 1);
        assert_eq!(after.entries_written - before.entries_written, n);
    }
    // Nothing new: no I/O at all.
    let before = s.stats();
    s.sync().unwrap();
    assert_eq!(s.stats(), before);
    // A term change adds the hard-state file's fsync and the directory's.
    s.set_hard_state(&HardState {
        term: 2,
        vote: Some(1),
        commit: next - 2,
    })
    .unwrap();
    s.append(e(next, 2, b"x")).unwrap();
    s.sync().unwrap();
    assert_eq!(s.stats().log_fsyncs, before.log_fsyncs + 1);
    assert_eq!(s.stats().meta_fsyncs, before.meta_fsyncs + 2);
}

#[test]
fn segments_roll_and_are_read_across() {
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 256);
    for i in 1..=40 {
        s.append(e(i, 1 + i / 10, &payload(i))).unwrap();
        if i % 3 == 0 {
            s.sync().unwrap();
        }
    }
    s.sync().unwrap();
    let n = s.segment_count();
    assert!(n >= 5, "{n} segments");
    assert_eq!(s.stats().segments_created as usize, n);
    assert_eq!(segment_paths(dir.path()).len(), n);
    let all = read_all(&s);
    assert_eq!(all.len(), 40);
    assert_eq!(s.disk_usage(), s.log_bytes());
    drop(s);
    let s = open_with(dir.path(), 256);
    assert_eq!(read_all(&s), all);
    assert_eq!(s.recovery_report().segments, n);
}

/// Writes a complete snapshot through the streaming API, in pieces of 7 bytes.
fn snap(s: &mut FileStorage, index: Index, term: Term, membership: &Membership, data: &[u8]) {
    let meta = SnapshotMeta {
        index,
        term,
        membership: membership.clone(),
    };
    s.begin_snapshot(&meta).unwrap();
    for piece in data.chunks(7) {
        s.write_snapshot(piece).unwrap();
    }
    s.finish_snapshot().unwrap();
}

/// The current snapshot's data, read back in pieces of 5 bytes.
fn snapshot_data(s: &FileStorage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 5];
    loop {
        let n = s.read_snapshot(out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, s.snapshot_len());
    out
}

/// Snapshot files in `dir` (final names only), oldest first.
fn snapshot_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    v.sort();
    v
}

fn voters(ids: &[NodeId]) -> Membership {
    Membership::from_voters(ids).unwrap()
}

#[test]
fn snapshot_roundtrip_and_reopen() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    assert_eq!(
        (s.snapshot_len(), s.snapshot_meta()),
        (0, SnapshotMeta::default())
    );
    assert_eq!(s.read_snapshot(0, &mut [0u8; 4]).unwrap(), 0);
    append_range(&mut s, 1, 30, 1);
    append_range(&mut s, 31, 50, 2);
    s.sync().unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    // A joint configuration with learners: every list must survive.
    let m = Membership {
        outgoing: heapless::Vec::from_slice(&[1, 2, 3]).unwrap(),
        learners: heapless::Vec::from_slice(&[5, 6]).unwrap(),
        ..voters(&[2, 3, 4])
    };
    snap(&mut s, 40, 2, &m, &data);
    let check = |s: &FileStorage| {
        let meta = s.snapshot_meta();
        assert_eq!((meta.index, meta.term, &meta.membership), (40, 2, &m));
        assert_eq!((s.first_index(), s.last_index()), (41, 50));
        assert_eq!(s.term(40).unwrap(), 2);
        assert_eq!(s.term(39).unwrap_err().kind(), StorageErrorKind::Compacted);
        assert_eq!(s.initial_state().unwrap().membership, Some(m.clone()));
        assert!(s.hard_state().commit >= 40);
        assert_eq!(snapshot_data(s), data);
        // Reads at any offset, short at the end, empty past it.
        let mut buf = [0u8; 16];
        assert_eq!(s.read_snapshot(990, &mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], &data[990..]);
        assert_eq!(s.read_snapshot(1000, &mut buf).unwrap(), 0);
        assert_eq!(s.read_snapshot(u64::MAX, &mut buf).unwrap(), 0);
        assert_eq!(read(s, 41, 42), vec![(41, 2, payload(41))]);
    };
    check(&s);
    assert_eq!(s.stats().snapshots_finished, 1);
    drop(s);
    let s = open(dir.path());
    check(&s);
    assert_eq!(s.recovery_report().refused_snapshot, None);
    assert_eq!(snapshot_paths(dir.path()).len(), 1);
}

#[test]
fn a_snapshot_matching_the_log_keeps_the_suffix_and_deletes_covered_segments() {
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 300);
    for i in 1..=60 {
        s.append(e(i, 1 + i / 20, &payload(i))).unwrap();
        if i % 4 == 0 {
            s.sync().unwrap();
        }
    }
    s.sync().unwrap();
    let segs_before = s.segment_count();
    let log_before = s.log_bytes();
    let usage_before = s.disk_usage();
    let m = voters(&[1, 2, 3]);
    snap(&mut s, 40, 1 + 40 / 20, &m, b"state at 40");
    assert_eq!((s.first_index(), s.last_index()), (41, 60));
    assert_eq!(
        s.entries(40, 42, 100, &mut |_| true).unwrap_err().kind(),
        StorageErrorKind::Compacted
    );
    // No earlier snapshot: nothing to keep segments for.
    assert!(s.segment_count() < segs_before);
    assert_eq!(segment_paths(dir.path()).len(), s.segment_count());
    assert!(s.log_bytes() < log_before);
    assert!(s.disk_usage() < usage_before);
    // Every remaining segment still holds a record above the snapshot.
    assert!(s.segments.iter().all(|g| g.max_index > 40));
    let after = read_all(&s);
    assert_eq!(after.len(), 20);
    assert!(s.stats().segments_deleted > 0);
    drop(s);

    let mut s = open_with(dir.path(), 300);
    assert_eq!((s.first_index(), s.last_index()), (41, 60));
    assert_eq!(read_all(&s), after);
    // Appends go on after the snapshot, and a snapshot of everything works.
    append_range(&mut s, 61, 70, 9);
    snap(&mut s, 70, 9, &m, b"state at 70");
    assert_eq!((s.first_index(), s.last_index()), (71, 70));
    assert_eq!(s.term(70).unwrap(), 9);
    s.append(e(71, 9, b"71")).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = open_with(dir.path(), 300);
    assert_eq!((s.first_index(), s.last_index()), (71, 71));
    assert_eq!(s.term(70).unwrap(), 9);
    assert_eq!(snapshot_data(&s), b"state at 70");
    // The previous snapshot is kept as a fallback, an older one is not.
    assert_eq!(snapshot_paths(dir.path()).len(), 2);
}

#[test]
fn a_snapshot_not_matching_the_log_discards_it() {
    // (index, term) of the snapshot against a log 1..=20 of term 1, synced up to 15.
    for (index, term) in [(10, 2), (25, 3), (20, 5)] {
        let dir = TempDir::new().unwrap();
        let mut s = open_with(dir.path(), 200);
        append_range(&mut s, 1, 15, 1);
        s.sync().unwrap();
        append_range(&mut s, 16, 20, 1);
        let m = voters(&[4, 5, 6]);
        snap(&mut s, index, term, &m, b"leader state");
        let ctx = format!("snapshot ({index}, {term})");
        assert_eq!(
            (s.first_index(), s.last_index()),
            (index + 1, index),
            "{ctx}"
        );
        assert_eq!(s.term(index).unwrap(), term, "{ctx}");
        assert_eq!(s.hard_state().commit, index, "{ctx}");
        assert_eq!(s.segment_files(), 0, "{ctx}");
        assert!(segment_paths(dir.path()).is_empty(), "{ctx}");
        // Only index + 1 may come next.
        let err = s.append(e(index + 2, term, b"gap")).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Unavailable, "{ctx}");
        let err = s.append(e(index, term, b"old")).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Unavailable, "{ctx}");
        s.append(e(index + 1, term, b"next")).unwrap();
        s.sync().unwrap();
        drop(s);

        let s = open_with(dir.path(), 200);
        assert_eq!(
            (s.first_index(), s.last_index()),
            (index + 1, index + 1),
            "{ctx}"
        );
        assert_eq!(
            read_all(&s),
            vec![(index + 1, term, b"next".to_vec())],
            "{ctx}"
        );
        assert_eq!(s.term(index).unwrap(), term, "{ctx}");
        assert_eq!(s.initial_state().unwrap().membership, Some(m), "{ctx}");
        assert_eq!(snapshot_data(&s), b"leader state", "{ctx}");
        assert_eq!(s.hard_state().commit, index, "{ctx}");
    }
}

#[test]
fn a_discarded_log_stays_discarded_without_any_append() {
    // No segment is written after the snapshot: the stale segments must still not come back.
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 10, 1);
    s.sync().unwrap();
    snap(&mut s, 5, 7, &Membership::default(), b"x");
    drop(s);
    let mut s = open(dir.path());
    assert_eq!((s.first_index(), s.last_index()), (6, 5));
    assert_eq!(s.term(5).unwrap(), 7);
    s.append(e(6, 7, b"six")).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(read_all(&s), vec![(6, 7, b"six".to_vec())]);
}

#[test]
fn an_unfinished_snapshot_leaves_the_previous_one_current() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 20, 1);
    s.sync().unwrap();
    snap(&mut s, 5, 1, &voters(&[1]), b"five");
    let meta = |index| SnapshotMeta {
        index,
        term: 1,
        membership: voters(&[1, 2]),
    };
    // Without begin there is nothing to write to or finish.
    for err in [
        s.write_snapshot(b"x").unwrap_err(),
        s.finish_snapshot().unwrap_err(),
    ] {
        assert!(matches!(err, FileStorageError::NoSnapshotBegun), "{err}");
        assert_eq!(err.kind(), StorageErrorKind::Unavailable);
    }
    // A second begin discards the first unfinished snapshot.
    s.begin_snapshot(&meta(8)).unwrap();
    s.write_snapshot(b"eight").unwrap();
    s.begin_snapshot(&meta(10)).unwrap();
    s.write_snapshot(b"ten, half").unwrap();
    let tmps = |dir: &Path| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|d| {
                d.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    };
    assert_eq!(tmps(dir.path()), 1);
    // Until finished, the previous snapshot is current and the log untouched.
    assert_eq!(s.snapshot_meta().index, 5);
    assert_eq!(snapshot_data(&s), b"five");
    assert_eq!(s.first_index(), 6);
    drop(s); // a crash

    let s = open(dir.path());
    assert_eq!(s.snapshot_meta().index, 5);
    assert_eq!(s.initial_state().unwrap().membership, Some(voters(&[1])));
    assert_eq!(snapshot_data(&s), b"five");
    assert_eq!((s.first_index(), s.last_index()), (6, 20));
    assert_eq!(s.recovery_report().leftovers_removed, 1);
    assert_eq!(tmps(dir.path()), 0);
    assert_eq!(snapshot_paths(dir.path()).len(), 1);
}

#[test]
fn a_failed_snapshot_write_abandons_it_without_poisoning() {
    let dir = TempDir::new().unwrap();
    let faults = FaultInjector::new();
    let mut s =
        FileStorage::open(dir.path(), FileStorageOptions::new().faults(faults.clone())).unwrap();
    append_range(&mut s, 1, 10, 1);
    s.sync().unwrap();
    snap(&mut s, 3, 1, &Membership::default(), b"three");
    s.begin_snapshot(&SnapshotMeta {
        index: 8,
        term: 1,
        membership: Membership::default(),
    })
    .unwrap();
    s.write_snapshot(b"some").unwrap();
    faults.fill_disk_on_next_snapshot_write();
    let err = s.write_snapshot(b"more").unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Full, "{err}");
    assert!(s.poisoned().is_none());
    assert!(matches!(
        s.finish_snapshot().unwrap_err(),
        FileStorageError::NoSnapshotBegun
    ));
    assert_eq!(s.snapshot_meta().index, 3);
    assert_eq!(snapshot_data(&s), b"three");
    assert!(!fs::read_dir(dir.path()).unwrap().any(|d| d
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    // Out of space while finishing (the trailer) abandons it too.
    s.begin_snapshot(&SnapshotMeta {
        index: 8,
        term: 1,
        membership: Membership::default(),
    })
    .unwrap();
    s.write_snapshot(b"eight").unwrap();
    faults.fill_disk_on_next_snapshot_write();
    assert_eq!(
        s.finish_snapshot().unwrap_err().kind(),
        StorageErrorKind::Full
    );
    assert_eq!(s.snapshot_meta().index, 3);
    // Starting again works.
    snap(&mut s, 8, 1, &Membership::default(), b"eight");
    assert_eq!((s.first_index(), s.last_index()), (9, 10));
    drop(s);
    let s = open(dir.path());
    assert_eq!(snapshot_data(&s), b"eight");
}

#[test]
fn a_failed_fsync_during_a_snapshot_poisons_the_storage() {
    // The snapshot file's own fdatasync, then the directory's fsync after the rename.
    for dir_sync in [false, true] {
        let dir = TempDir::new().unwrap();
        let faults = FaultInjector::new();
        let mut s = FileStorage::open(dir.path(), FileStorageOptions::new().faults(faults.clone()))
            .unwrap();
        append_range(&mut s, 1, 10, 1);
        s.sync().unwrap();
        snap(&mut s, 4, 1, &Membership::default(), b"four");
        s.begin_snapshot(&SnapshotMeta {
            index: 8,
            term: 1,
            membership: Membership::default(),
        })
        .unwrap();
        s.write_snapshot(b"eight").unwrap();
        if dir_sync {
            faults.fail_next_meta_sync();
        } else {
            faults.fail_next_snapshot_sync();
        }
        let err = s.finish_snapshot().unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Io, "{err}");
        assert!(s.poisoned().is_some());
        for err in [
            s.append(e(11, 1, b"x")).unwrap_err(),
            s.sync().unwrap_err(),
            s.begin_snapshot(&SnapshotMeta::default()).unwrap_err(),
            s.write_snapshot(b"x").unwrap_err(),
            s.finish_snapshot().unwrap_err(),
        ] {
            assert!(matches!(err, FileStorageError::Poisoned { .. }), "{err}");
        }
        // Reads still work, from the snapshot that was current.
        assert_eq!(snapshot_data(&s), b"four");
        drop(s);
        // Whichever snapshot reached the disk, the storage is consistent with it.
        let s = open(dir.path());
        let index = s.snapshot_meta().index;
        if dir_sync {
            // The rename happened (only its durability is in doubt).
            assert_eq!(index, 8);
            assert_eq!(snapshot_data(&s), b"eight");
        } else {
            assert_eq!(index, 4);
            assert_eq!(snapshot_data(&s), b"four");
        }
        assert_eq!((s.first_index(), s.last_index()), (index + 1, 10));
        assert_eq!(read(&s, 10, 11), vec![(10, 1, payload(10))]);
    }
}

/// A directory with snapshot A at 20, snapshot B at 40 (both matching the log), the log to
/// 60, segments of 300 bytes. Returns (A's path, B's path).
fn two_snapshots(dir: &Path) -> (PathBuf, PathBuf) {
    let mut s = open_with(dir, 300);
    for i in 1..=60 {
        s.append(e(i, 1 + i / 25, &payload(i))).unwrap();
        s.sync().unwrap();
        if i == 30 {
            snap(&mut s, 20, 1, &voters(&[1, 2, 3]), &[20; 3000]);
        }
        if i == 50 {
            snap(&mut s, 40, 2, &voters(&[1, 2, 3, 4]), &[40; 5000]);
        }
    }
    let paths = (
        s.fallback_snapshot_path().unwrap().to_path_buf(),
        s.snapshot_path().unwrap().to_path_buf(),
    );
    assert_eq!(snapshot_paths(dir), vec![paths.0.clone(), paths.1.clone()]);
    paths
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_damaged_snapshot_is_refused_and_the_previous_one_replaces_it_when_the_log_covers_it() {
    let template = TempDir::new().unwrap();
    let (a, b) = two_snapshots(template.path());
    let len = file_len(&b);
    type Damage<'a> = &'a dyn Fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("cut in the data", &|p| set_file_len(p, 2000).unwrap()),
        ("cut in the trailer", &|p| set_file_len(p, len - 3).unwrap()),
        ("bit flip in the data", &|p| flip_bit(p, 3000, 4).unwrap()),
        ("bit flip in the header", &|p| flip_bit(p, 25, 0).unwrap()),
        ("bit flip in the trailer", &|p| {
            flip_bit(p, len - 30, 7).unwrap()
        }),
    ];
    for (what, damage) in damages {
        let dir = copy_dir(template.path());
        let (a, b) = (dir.path().join(name_of(&a)), dir.path().join(name_of(&b)));
        damage(&b);
        let mut s = open_with(dir.path(), 300);
        let report = s.recovery_report().refused_snapshot.clone().expect(what);
        assert_eq!(report.path, b, "{what}");
        assert!(
            report.reason.contains(&name_of(&b)),
            "{what}: {}",
            report.reason
        );
        assert_eq!(report.replaced_by, a, "{what}");
        assert!(report.moved_to.exists() && !b.exists(), "{what}");
        // Snapshot A plus the log is the state of B and more.
        assert_eq!(s.snapshot_meta().index, 20, "{what}");
        assert_eq!(snapshot_data(&s), vec![20; 3000], "{what}");
        assert_eq!((s.first_index(), s.last_index()), (21, 60), "{what}");
        assert_eq!(s.term(40).unwrap(), 2, "{what}");
        assert_eq!(
            s.initial_state().unwrap().membership,
            Some(voters(&[1, 2, 3]))
        );
        // It goes on: a new snapshot, then a reopen that finds it.
        snap(&mut s, 55, 3, &voters(&[1]), b"55");
        drop(s);
        let s = open_with(dir.path(), 300);
        assert_eq!(s.snapshot_meta().index, 55, "{what}");
        assert_eq!(s.recovery_report().refused_snapshot, None, "{what}");
        assert_eq!((s.first_index(), s.last_index()), (56, 60), "{what}");
    }
}

#[test]
fn a_damaged_snapshot_is_refused_with_its_name_when_nothing_can_replace_it() {
    let template = TempDir::new().unwrap();
    let (a, b) = two_snapshots(template.path());
    let must_refuse = |dir: &Path, why: &str| {
        let err = open_err(dir);
        assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&name_of(&b)), "{msg}");
        assert!(msg.contains(why), "{msg}");
        // Nothing was set aside or deleted.
        assert!(dir.join(name_of(&b)).exists() && dir.join(name_of(&a)).exists());
    };

    // Only one snapshot kept.
    let dir = copy_dir(template.path());
    fs::remove_file(dir.path().join(name_of(&a))).unwrap();
    set_file_len(dir.path().join(name_of(&b)), 4000).unwrap();
    let err = open_err(dir.path());
    assert!(err.to_string().contains(&name_of(&b)), "{err}");
    assert!(err.to_string().contains("no previous snapshot"), "{err}");

    // The previous snapshot is damaged too.
    let dir = copy_dir(template.path());
    flip_bit(dir.path().join(name_of(&b)), 3000, 1).unwrap();
    flip_bit(dir.path().join(name_of(&a)), 2000, 1).unwrap();
    must_refuse(dir.path(), &name_of(&a));

    // Header and trailer both damaged: what it covered is unknown.
    let dir = copy_dir(template.path());
    let p = dir.path().join(name_of(&b));
    flip_bit(&p, 25, 0).unwrap();
    flip_bit(&p, file_len(&p) - 30, 0).unwrap();
    must_refuse(dir.path(), "unreadable");

    // The log no longer holds what lies between the two snapshots.
    let dir = copy_dir(template.path());
    flip_bit(dir.path().join(name_of(&b)), 3000, 1).unwrap();
    let first_seg = segment_paths(dir.path())[0].clone();
    fs::remove_file(&first_seg).unwrap();
    must_refuse(dir.path(), "missing");
}

#[test]
fn no_fallback_over_a_snapshot_that_replaced_the_log() {
    // B did not match the log (installed from a leader): A plus the log cannot rebuild it.
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 300);
    append_range(&mut s, 1, 30, 1);
    s.sync().unwrap();
    snap(&mut s, 10, 1, &Membership::default(), b"A");
    snap(&mut s, 50, 4, &Membership::default(), b"B");
    append_range(&mut s, 51, 60, 4);
    s.sync().unwrap();
    let b = s.snapshot_path().unwrap().to_path_buf();
    drop(s);
    flip_bit(&b, 40, 2).unwrap();
    let err = open_err(dir.path());
    assert_eq!(err.kind(), StorageErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&name_of(&b)), "{err}");
    assert!(err.to_string().contains("cannot replace it"), "{err}");
}

#[test]
fn the_log_and_the_segment_files_stay_bounded_over_many_snapshots() {
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 4096);
    let m = voters(&[1, 2, 3]);
    let (mut max_log, mut max_files, mut max_usage) = (0, 0, 0);
    for i in 1..=10_000u64 {
        s.append(e(i, 1 + i / 1000, &payload(i))).unwrap();
        if i % 20 == 0 {
            s.sync().unwrap();
        }
        if i % 100 == 0 {
            // As a node does: snapshot what was applied, a little behind the log.
            let index = i - 20;
            let term = s.term(index).unwrap();
            snap(&mut s, index, term, &m, &index.to_le_bytes());
        }
        max_log = max_log.max(s.last_index() + 1 - s.first_index());
        max_files = max_files.max(segment_paths(dir.path()).len());
        max_usage = max_usage.max(s.disk_usage());
        assert_eq!(s.segment_files(), segment_paths(dir.path()).len(), "at {i}");
    }
    assert!(max_log <= 200, "{max_log} entries in the log");
    // Entries take ~75 bytes on disk, so 100 of them ~7.5 KB. The disk holds the log back to
    // the fallback snapshot: at most ~140 entries, ~10.5 KB, three 4 KiB segments, plus the one
    // being written and partial ones at both ends.
    assert!(max_files <= 7, "{max_files} segment files");
    assert!(max_usage < 25_000, "{max_usage} bytes on disk");
    assert_eq!(snapshot_paths(dir.path()).len(), 2);
    drop(s);
    let s = open_with(dir.path(), 4096);
    assert_eq!((s.first_index(), s.last_index()), (9981, 10_000));
    assert_eq!(snapshot_data(&s), 9980u64.to_le_bytes());
}

#[test]
fn a_large_snapshot_is_streamed_in_and_out() {
    // 50 MB in 64 KiB pieces. Memory stays bounded by design: data goes straight from the
    // caller's slice to the file and back (tests/snapshot_memory.rs measures it).
    const PIECE: usize = 64 * 1024;
    const LEN: u64 = 50_000_000;
    let byte = |at: u64| (at.wrapping_mul(2_654_435_761) >> 13) as u8;
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 10, 1);
    s.sync().unwrap();
    s.begin_snapshot(&SnapshotMeta {
        index: 10,
        term: 1,
        membership: voters(&[1]),
    })
    .unwrap();
    let mut piece = vec![0u8; PIECE];
    let mut at = 0u64;
    while at < LEN {
        let n = (PIECE as u64).min(LEN - at) as usize;
        for (k, b) in piece[..n].iter_mut().enumerate() {
            *b = byte(at + k as u64);
        }
        s.write_snapshot(&piece[..n]).unwrap();
        at += n as u64;
    }
    s.finish_snapshot().unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.snapshot_len(), LEN);
    let mut at = 0u64;
    loop {
        let n = s.read_snapshot(at, &mut piece).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            piece[..n]
                .iter()
                .enumerate()
                .all(|(k, &b)| b == byte(at + k as u64)),
            "data differs in the piece at {at}"
        );
        at += n as u64;
    }
    assert_eq!(at, LEN);
}

#[test]
fn segments_and_snapshots_an_interrupted_finish_left_behind_are_removed() {
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 200);
    for i in 1..=30 {
        s.append(e(i, 1, &payload(i))).unwrap();
        s.sync().unwrap();
    }
    snap(&mut s, 10, 1, &Membership::default(), b"10");
    snap(&mut s, 20, 1, &Membership::default(), b"20");
    let first = segment_paths(dir.path())[0].clone();
    let saved = fs::read(&first).unwrap();
    let oldest = snapshot_paths(dir.path())[0].clone();
    let saved_snapshot = fs::read(&oldest).unwrap();
    snap(&mut s, 25, 1, &Membership::default(), b"25");
    assert!(!first.exists() && !oldest.exists());
    drop(s);
    // A crash after the new snapshot was durable but before the deletions reached the disk.
    fs::write(&first, saved).unwrap();
    fs::write(&oldest, saved_snapshot).unwrap();
    let s = open_with(dir.path(), 200);
    assert_eq!((s.first_index(), s.last_index()), (26, 30));
    assert_eq!(s.recovery_report().leftovers_removed, 2);
    assert!(!first.exists() && !oldest.exists());
    assert_eq!(snapshot_paths(dir.path()).len(), 2);
}

#[test]
fn a_truncation_into_the_snapshot_is_replayed_correctly() {
    // Records below the snapshot that truncate newer ones must still truncate them on
    // replay, or stale entries would come back after the snapshot.
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 1 << 20);
    append_range(&mut s, 1, 10, 1);
    s.sync().unwrap();
    s.append(e(5, 2, b"5")).unwrap();
    s.append(e(6, 2, b"6")).unwrap();
    s.sync().unwrap();
    snap(&mut s, 6, 2, &Membership::default(), b"");
    assert_eq!((s.first_index(), s.last_index()), (7, 6));
    drop(s);
    // The segment still holds the stale 7..=10 of term 1 ahead of the truncating records.
    let mut s = open(dir.path());
    assert_eq!((s.first_index(), s.last_index()), (7, 6));
    assert_eq!(s.term(6).unwrap(), 2);
    s.append(e(7, 2, b"7")).unwrap();
    s.sync().unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!((s.first_index(), s.last_index()), (7, 7));
    assert_eq!(s.term(6).unwrap(), 2);
    assert_eq!(read_all(&s), vec![(7, 2, b"7".to_vec())]);
}

#[test]
fn a_snapshot_syncs_pending_appends_first() {
    let dir = TempDir::new().unwrap();
    let mut s = open(dir.path());
    append_range(&mut s, 1, 10, 1);
    s.sync().unwrap();
    // Pending: a conflict truncation to 5, which the snapshot at (5, 2) matches.
    s.append(e(4, 2, b"4")).unwrap();
    s.append(e(5, 2, b"5")).unwrap();
    snap(&mut s, 5, 2, &Membership::default(), b"");
    drop(s);
    let s = open(dir.path());
    assert_eq!((s.first_index(), s.last_index()), (6, 5));
    assert_eq!(s.term(5).unwrap(), 2);
}

#[test]
fn a_format_1_snapshot_meta_file_becomes_a_snapshot() {
    let dir = TempDir::new().unwrap();
    let mut s = open_with(dir.path(), 200);
    for i in 1..=30 {
        s.append(e(i, 1, &payload(i))).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    let segs = segment_paths(dir.path());
    // What format 1's compact(12) wrote: the compaction point and the first needed segment.
    let m = voters(&[2, 3]);
    let legacy = hard_state::MetaFile {
        snapshot: SnapshotMeta {
            index: 12,
            term: 1,
            membership: m.clone(),
        },
        first_segment_seq: 2,
    };
    fs::write(
        dir.path().join("snapshot-meta"),
        hard_state::encode_meta(&legacy),
    )
    .unwrap();
    fs::remove_file(&segs[0]).unwrap();
    let s = open_with(dir.path(), 200);
    assert_eq!((s.first_index(), s.last_index()), (13, 30));
    assert_eq!(s.initial_state().unwrap().membership, Some(m));
    assert_eq!(s.snapshot_len(), 0);
    assert!(!dir.path().join("snapshot-meta").exists());
    assert_eq!(snapshot_paths(dir.path()).len(), 1);
    // A damaged one is refused, naming it.
    drop(s);
    let dir = TempDir::new().unwrap();
    let mut bytes = hard_state::encode_meta(&legacy);
    bytes[20] ^= 1;
    fs::write(dir.path().join("snapshot-meta"), bytes).unwrap();
    let err = open_err(dir.path());
    assert!(err.to_string().contains("snapshot-meta"), "{err}");
}

#[test]
fn bootstrap_membership_is_persisted_only_for_a_new_directory() {
    let dir = TempDir::new().unwrap();
    let m = Membership::from_voters(&[1, 2, 3]).unwrap();
    let opts = FileStorageOptions::new().bootstrap_membership(m.clone());
    let s = FileStorage::open(dir.path(), opts).unwrap();
    assert_eq!(s.initial_state().unwrap().membership, Some(m.clone()));
    assert_eq!(s.snapshot_meta().index, 0);
    assert_eq!(s.term(0).unwrap(), 0);
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.initial_state().unwrap().membership, Some(m.clone()));
    drop(s);
    let other = Membership::from_voters(&[7]).unwrap();
    let s = FileStorage::open(
        dir.path(),
        FileStorageOptions::new().bootstrap_membership(other),
    )
    .unwrap();
    assert_eq!(s.initial_state().unwrap().membership, Some(m));
}

#[test]
fn invalid_options_and_unusable_paths_are_errors() {
    let dir = TempDir::new().unwrap();
    let err =
        FileStorage::open(dir.path(), FileStorageOptions::new().segment_bytes(0)).unwrap_err();
    assert!(matches!(err, FileStorageError::InvalidOptions(_)));
    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let err = FileStorage::open(&file, FileStorageOptions::new()).unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Io);
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[test]
fn garbage_files_are_refused_without_panicking() {
    let dir = TempDir::new().unwrap();
    let seg = dir.path().join(segment::segment_file_name(1));
    for garbage in [
        Vec::new(),
        vec![0u8; 10],
        vec![0xffu8; 5000],
        b"tnyrflog".repeat(100),
    ] {
        fs::write(&seg, &garbage).unwrap();
        assert_eq!(open_err(dir.path()).kind(), StorageErrorKind::Corrupt);
    }
    // A valid header followed by a record claiming 4 GiB: a torn tail, not an allocation.
    let mut bytes = record::encode_segment_header(1).to_vec();
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 2]);
    fs::write(&seg, &bytes).unwrap();
    let s = open(dir.path());
    assert_eq!(s.last_index(), 0);
    assert_eq!(file_len(&seg), record::SEGMENT_HEADER_LEN as u64);
}

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn random_damage_never_panics_and_never_invents_entries() {
    let template = TempDir::new().unwrap();
    let mut s = open_with(template.path(), 400);
    let mut truth = Vec::new();
    let snapshot_bytes = |index: u64| vec![index as u8; 300 + index as usize];
    for i in 1..=40 {
        let term = 1 + i / 8;
        s.append(e(i, term, &payload(i))).unwrap();
        truth.push((i, term, payload(i)));
        if i % 3 == 0 {
            s.set_hard_state(&HardState {
                term,
                vote: Some(1),
                commit: i - 1,
            })
            .unwrap();
            s.sync().unwrap();
        }
        // Two snapshots, so that damage to the newer one can fall back to the older.
        if i == 16 || i == 28 {
            let index = i - 6;
            snap(
                &mut s,
                index,
                1 + index / 8,
                &voters(&[1]),
                &snapshot_bytes(index),
            );
        }
    }
    s.sync().unwrap();
    drop(s);
    let names: Vec<_> = fs::read_dir(template.path())
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .collect();
    let (mut opened, mut refused, mut fell_back) = (0, 0, 0);
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let dir = copy_dir(template.path());
        let victim = dir
            .path()
            .join(&names[rng.below(names.len() as u64) as usize]);
        let len = file_len(&victim);
        match rng.below(4) {
            0 => flip_bit(&victim, rng.below(len), rng.below(8) as u8).unwrap(),
            1 => set_file_len(&victim, rng.below(len + 64)).unwrap(),
            2 => {
                let junk: Vec<u8> = (0..rng.below(300) + 1).map(|_| rng.next() as u8).collect();
                overwrite(&victim, rng.below(len + 1), &junk).unwrap();
            }
            _ => {
                let at = rng.below(len.saturating_sub(8));
                overwrite(&victim, at, &(rng.next() as u32).to_le_bytes()).unwrap();
            }
        }
        match FileStorage::open(dir.path(), FileStorageOptions::new().segment_bytes(400)) {
            Ok(s) => {
                // The snapshot is one of the two written, with its data; the log after it is
                // a prefix of the truth (damage that looks like a torn write may cut it), and
                // it can be read back.
                let index = s.snapshot_meta().index;
                assert!(
                    index == 10 || index == 22,
                    "seed {seed}: snapshot at {index}"
                );
                assert_eq!(snapshot_data(&s), snapshot_bytes(index), "seed {seed}");
                let got = read_all(&s);
                assert!(got.len() <= truth.len() - index as usize, "seed {seed}");
                assert_eq!(got[..], truth[index as usize..][..got.len()], "seed {seed}");
                assert!(s.hard_state().commit <= s.last_index(), "seed {seed}");
                fell_back += usize::from(s.recovery_report().refused_snapshot.is_some());
                opened += 1;
            }
            Err(err) => {
                assert!(
                    matches!(err.kind(), StorageErrorKind::Corrupt | StorageErrorKind::Io),
                    "seed {seed}: {err}"
                );
                assert!(!err.to_string().is_empty());
                refused += 1;
            }
        }
    }
    // Both outcomes must occur, or the damage is not reaching the interesting places.
    assert!(
        opened >= 5 && refused >= 5 && fell_back >= 1,
        "{opened} opened ({fell_back} on the older snapshot), {refused} refused"
    );
}

/// The storage as the model sees it: the snapshot, and the live entries after it.
#[derive(Clone, Debug, Default)]
struct Model {
    snap_index: Index,
    snap_term: Term,
    snap_data: Vec<u8>,
    /// Entries `snap_index + 1 ..`.
    log: Vec<(Term, Vec<u8>)>,
}

impl Model {
    fn last(&self) -> Index {
        self.snap_index + self.log.len() as u64
    }
}

#[test]
fn random_operations_match_a_model_across_reopens() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let dir = TempDir::new().unwrap();
        let seg_bytes = 200 + rng.below(2000);
        let mut s = open_with(dir.path(), seg_bytes);
        let mut now = Model::default();
        let mut durable = Model::default();
        let mut term = 1;
        for step in 0..400 {
            match rng.below(100) {
                0..=59 => {
                    let last = now.last();
                    // Mostly extend; sometimes overwrite a suffix above the snapshot.
                    let index = if rng.below(5) == 0 && last > now.snap_index {
                        now.snap_index + 1 + rng.below(last - now.snap_index)
                    } else {
                        last + 1
                    };
                    if rng.below(10) == 0 {
                        term += 1;
                    }
                    let data: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                    s.append(e(index, term, &data)).unwrap();
                    now.log.truncate((index - now.snap_index - 1) as usize);
                    now.log.push((term, data));
                }
                60..=79 => {
                    s.sync().unwrap();
                    durable = now.clone();
                }
                80..=84 => {
                    // A snapshot of a point in the log (pending entries included): the
                    // entries after it stay, and everything pending is synced first.
                    let index = now.snap_index + rng.below(now.last() - now.snap_index + 1);
                    let keep = (index - now.snap_index) as usize;
                    let snap_term = if keep == 0 {
                        now.snap_term
                    } else {
                        now.log[keep - 1].0
                    };
                    let data: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
                    snap(&mut s, index, snap_term, &Membership::default(), &data);
                    now.log.drain(..keep);
                    (now.snap_index, now.snap_term, now.snap_data) = (index, snap_term, data);
                    durable = now.clone();
                }
                85..=87 => {
                    // A snapshot from a leader of a newer term: it matches nothing in the log,
                    // which goes whole.
                    term += 1;
                    let index = now.snap_index + rng.below(now.last() - now.snap_index + 5);
                    let data: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
                    snap(&mut s, index, term, &Membership::default(), &data);
                    now = Model {
                        snap_index: index,
                        snap_term: term,
                        snap_data: data,
                        log: Vec::new(),
                    };
                    durable = now.clone();
                }
                _ => {
                    drop(s);
                    s = open_with(dir.path(), seg_bytes);
                    now = durable.clone();
                }
            }
            let ctx = format!("seed {seed} step {step}");
            assert_eq!(s.first_index(), now.snap_index + 1, "{ctx}");
            assert_eq!(s.last_index(), now.last(), "{ctx}");
            assert_eq!(s.term(now.snap_index).unwrap(), now.snap_term, "{ctx}");
            let want: Vec<_> = now
                .log
                .iter()
                .enumerate()
                .map(|(k, (t, d))| (now.snap_index + 1 + k as u64, *t, d.clone()))
                .collect();
            assert_eq!(read_all(&s), want, "{ctx}");
            assert_eq!(snapshot_data(&s), now.snap_data, "{ctx}");
            // Two snapshot files at most (current and fallback), whatever happened.
            assert!(snapshot_paths(dir.path()).len() <= 2, "{ctx}");
        }
    }
}

#[test]
fn arbitrary_snapshot_files_never_panic() {
    // Garbage, and files with valid CRCs around extreme values: what a fuzzer that computes
    // CRCs could forge. Open must answer with a storage or an error, never a panic, and what
    // it opens must be readable.
    let template = TempDir::new().unwrap();
    let mut s = open_with(template.path(), 300);
    append_range(&mut s, 1, 20, 1);
    s.sync().unwrap();
    drop(s);
    let mut rng = Rng(0x5eed);
    let mut files: Vec<Vec<u8>> = Vec::new();
    for len in [0, 1, 8, 19, 20, 64, 200, 5000] {
        files.push((0..len).map(|_| rng.next() as u8).collect());
    }
    for index in [0, 5, 20, 21, 1000, snapshot::INDEX_MAX, u64::MAX] {
        for first_segment_seq in [0, 1, 2, 1 << 40, u64::MAX] {
            for (gen, data_len, data) in [
                (1, 0, &b""[..]),
                (1, 3, &b"abc"[..]),
                (1, u64::MAX, &b"abc"[..]),
                (2, 3, &b"abc"[..]),
            ] {
                let h = snapshot::SnapshotHeader {
                    gen,
                    meta: SnapshotMeta {
                        index,
                        term: u64::MAX,
                        membership: voters(&[1, 2, 3, 4, 5, 6, 7]),
                    },
                    first_segment_seq,
                };
                let mut b = snapshot::encode_header(&h);
                b.extend_from_slice(data);
                b.extend(snapshot::encode_trailer(&h, data_len, crc32c::crc32c(data)));
                files.push(b);
            }
        }
    }
    let name = snapshot::snapshot_file_name(1);
    for (k, bytes) in files.iter().enumerate() {
        for with_log in [true, false] {
            let dir = if with_log {
                copy_dir(template.path())
            } else {
                TempDir::new().unwrap()
            };
            fs::write(dir.path().join(&name), bytes).unwrap();
            match FileStorage::open(dir.path(), FileStorageOptions::new().segment_bytes(300)) {
                Ok(mut s) => {
                    let _ = read_all(&s);
                    let _ = snapshot_data(&s);
                    let _ = s.initial_state().unwrap();
                    let next = s.last_index() + 1;
                    if s.append(e(next, u64::MAX, b"more")).is_ok() {
                        let _ = s.sync();
                    }
                }
                Err(err) => assert!(!err.to_string().is_empty(), "file {k}"),
            }
        }
    }
}
