//! Reading an instance's log for `rune logs`: the lines already written (a log and
//! its rotation `.1`, optionally only the last N), then, when following, what is
//! appended, across copy-then-truncate rotations.
//!
//! Lines carry no time of their own (the instance writes raw bytes). A timestamp
//! here is an upper bound, "written no later than": lines already in a file when
//! it is read get that file's modification time, followed lines the time the agent
//! read them (within [`POLL`] of the write).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often a followed log is checked for growth or rotation.
pub const POLL: Duration = Duration::from_millis(200);

/// What one request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Query {
    /// Only the last N lines of what is already written (all when `None`).
    pub tail: Option<usize>,
    /// Skip a file (the log or its rotation) last written before this.
    pub since: Option<SystemTime>,
    /// Prefix each line with its (upper-bound) time.
    pub timestamps: bool,
}

/// The offset in `f` (of length `len`) where its last `n` lines start, and how many
/// lines that is (fewer than `n` when the file holds fewer). A last line without a
/// newline counts as a line. Reads backwards in blocks: a tail of a large file
/// costs what the tail holds.
pub fn tail_offset(f: &mut File, len: u64, n: usize) -> io::Result<(u64, usize)> {
    if n == 0 || len == 0 {
        return Ok((len, 0));
    }
    const BLOCK: u64 = 64 * 1024;
    let mut buf = vec![0u8; BLOCK as usize];
    let mut end = len;
    let mut found = 0usize;
    // A trailing newline ends the last line; it does not start a new one.
    let mut skip_last_newline = true;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        for i in (0..chunk.len()).rev() {
            if chunk[i] != b'\n' {
                skip_last_newline = false;
                continue;
            }
            if skip_last_newline {
                skip_last_newline = false;
                continue;
            }
            found += 1;
            if found == n {
                return Ok((start + i as u64 + 1, n));
            }
        }
        end = start;
    }
    // Reached the start: the first line counts too, unless the file was one newline.
    let lines = if skip_last_newline { found } else { found + 1 };
    Ok((0, lines.min(n)))
}

/// A file's identity as far as copy-then-truncate rotation shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// The log's length.
    pub len: u64,
    /// The rotation's length and modification time (`None` while there is none).
    pub rotated: Option<(u64, SystemTime)>,
}

/// Whether the log was rotated between two looks: it shrank below what was read
/// (truncated), or its rotation `.1` changed (a copy landed, even if the log has
/// grown past the old offset again since).
pub fn was_rotated(offset: u64, before: Seen, now: Seen) -> bool {
    now.len < offset || (now.rotated.is_some() && now.rotated != before.rotated)
}

fn look(path: &Path, rotated: &Path) -> io::Result<Seen> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let rotated = std::fs::metadata(rotated)
        .ok()
        .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
    Ok(Seen { len, rotated })
}

/// How much of a file is read (and sent) at once.
const CHUNK: u64 = 256 * 1024;

/// Sends the complete lines of `path`'s bytes `[from, to)`, a chunk at a time,
/// stamped `at`. Returns false when `emit` did (the client is gone).
fn send_range(
    path: &Path,
    (from, to): (u64, u64),
    lines: &mut Lines,
    at: SystemTime,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> io::Result<bool> {
    if to <= from {
        return Ok(true);
    }
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut left = to - from;
    let mut buf = Vec::with_capacity(CHUNK.min(left) as usize);
    while left > 0 {
        buf.clear();
        let n = (&mut f).take(CHUNK.min(left)).read_to_end(&mut buf)?;
        if n == 0 {
            break; // Truncated meanwhile: the next look sees it.
        }
        left -= n as u64;
        let out = lines.push(&buf, at);
        if !out.is_empty() && !emit(out) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Splits bytes into complete lines, keeping a partial last line for later, and
/// writes them out with an optional time prefix.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    timestamps: bool,
}

impl Lines {
    pub fn new(timestamps: bool) -> Self {
        Lines {
            partial: Vec::new(),
            timestamps,
        }
    }

    /// The complete lines of `partial + bytes`, each ending in '\n', stamped `at`.
    pub fn push(&mut self, bytes: &[u8], at: SystemTime) -> Vec<u8> {
        self.partial.extend_from_slice(bytes);
        let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        self.stamp(&complete, at)
    }

    /// Whatever partial line is left, ended with a newline.
    pub fn flush(&mut self, at: SystemTime) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        let mut line = std::mem::take(&mut self.partial);
        line.push(b'\n');
        self.stamp(&line, at)
    }

    fn stamp(&self, complete: &[u8], at: SystemTime) -> Vec<u8> {
        if !self.timestamps {
            return complete.to_vec();
        }
        let ts = match jiff::Timestamp::try_from(at) {
            Ok(t) => format!("{t:.3} "),
            Err(_) => "- ".to_string(),
        };
        let mut out = Vec::with_capacity(complete.len() + 32);
        for line in complete.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(ts.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }
}

/// One request's reader of one instance log.
pub struct Reader {
    path: PathBuf,
    rotated: PathBuf,
    query: Query,
    lines: Lines,
    /// How far the log has been read.
    offset: u64,
    seen: Seen,
}

impl Reader {
    pub fn new(path: PathBuf, query: Query) -> Reader {
        let rotated = super::rotated(&path);
        Reader {
            path,
            rotated,
            query,
            lines: Lines::new(query.timestamps),
            offset: 0,
            seen: Seen::default(),
        }
    }

    /// Whether there is a log (or a rotation) to read at all.
    pub fn exists(&self) -> bool {
        self.path.exists() || self.rotated.exists()
    }

    /// What is written already, per the query (tail and since), sent a chunk at a
    /// time; leaves the reader at the log's end for [`Self::follow`]. Returns false
    /// when `emit` did.
    pub fn history(&mut self, emit: &mut dyn FnMut(Vec<u8>) -> bool) -> io::Result<bool> {
        let seen = look(&self.path, &self.rotated)?;
        let mtime = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        let recent = |t: SystemTime| self.query.since.is_none_or(|s| t >= s);
        // The log itself, from its tail offset.
        let (log_mtime, mut from, mut wanted) = (mtime(&self.path), 0, self.query.tail);
        if seen.len > 0 && !recent(log_mtime) {
            from = seen.len;
        } else if let (Some(n), true) = (wanted, seen.len > 0) {
            let mut f = File::open(&self.path)?;
            let (o, lines) = tail_offset(&mut f, seen.len, n)?;
            from = o;
            wanted = Some(n - lines);
        }
        // The rotation first, when wanted and recent.
        if let Some((rlen, rmtime)) = seen.rotated
            && wanted != Some(0)
            && recent(rmtime)
            && (from == 0 || seen.len == 0)
        {
            let start = match wanted {
                Some(n) => tail_offset(&mut File::open(&self.rotated)?, rlen, n)?.0,
                None => 0,
            };
            if !send_range(&self.rotated, (start, rlen), &mut self.lines, rmtime, emit)? {
                return Ok(false);
            }
            // A rotation's last line is complete whatever it ends with.
            let rest = self.lines.flush(rmtime);
            if !rest.is_empty() && !emit(rest) {
                return Ok(false);
            }
        }
        self.offset = seen.len;
        self.seen = seen;
        send_range(
            &self.path,
            (from, seen.len),
            &mut self.lines,
            log_mtime,
            emit,
        )
    }

    /// The partial last line of what was read, when the stream ends.
    pub fn finish(&mut self) -> Vec<u8> {
        let at = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        self.lines.flush(at)
    }

    /// What was appended since the last look, sent a chunk at a time: after a
    /// rotation, the rest of the old log from its copy `.1`, then the new log from
    /// its start. Returns false when `emit` did.
    pub fn follow(&mut self, emit: &mut dyn FnMut(Vec<u8>) -> bool) -> io::Result<bool> {
        let now = look(&self.path, &self.rotated)?;
        let at = SystemTime::now();
        if was_rotated(self.offset, self.seen, now) {
            if let Some((rlen, _)) = now.rotated
                && !send_range(
                    &self.rotated,
                    (self.offset, rlen),
                    &mut self.lines,
                    at,
                    emit,
                )?
            {
                return Ok(false);
            }
            let rest = self.lines.flush(at);
            if !rest.is_empty() && !emit(rest) {
                return Ok(false);
            }
            self.offset = 0;
        }
        let from = self.offset;
        self.offset = now.len.max(from);
        self.seen = now;
        send_range(&self.path, (from, now.len), &mut self.lines, at, emit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn history(r: &mut Reader) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(
            r.history(&mut |b| {
                out.extend(b);
                true
            })
            .unwrap()
        );
        out
    }

    fn follow(r: &mut Reader) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(
            r.follow(&mut |b| {
                out.extend(b);
                true
            })
            .unwrap()
        );
        out
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rune-read-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tail_of(text: &str, n: usize) -> (String, usize) {
        let d = scratch(&format!("tail-{}-{n}", text.len()));
        let p = d.join("f");
        std::fs::write(&p, text).unwrap();
        let mut f = File::open(&p).unwrap();
        let (o, lines) = tail_offset(&mut f, text.len() as u64, n).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        (text[o as usize..].to_string(), lines)
    }

    #[test]
    fn the_tail_of_a_file_is_its_last_n_lines() {
        assert_eq!(tail_of("a\nb\nc\n", 2), ("b\nc\n".into(), 2));
        assert_eq!(tail_of("a\nb\nc\n", 3), ("a\nb\nc\n".into(), 3));
        assert_eq!(tail_of("a\nb\nc\n", 5), ("a\nb\nc\n".into(), 3));
        assert_eq!(tail_of("a\nb\nc", 1), ("c".into(), 1));
        assert_eq!(tail_of("a\nb\nc", 2), ("b\nc".into(), 2));
        assert_eq!(tail_of("a\n", 0), ("".into(), 0));
        assert_eq!(tail_of("", 3), ("".into(), 0));
        assert_eq!(tail_of("\n", 3), ("\n".into(), 1));
        // Across read blocks.
        let big: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        let (t, n) = tail_of(&big, 3);
        assert_eq!((t.as_str(), n), ("line 49997\nline 49998\nline 49999\n", 3));
    }

    #[test]
    fn rotation_is_a_shrink_or_a_new_copy() {
        let t = SystemTime::UNIX_EPOCH;
        let seen = |len, rotated| Seen { len, rotated };
        assert!(!was_rotated(10, seen(10, None), seen(12, None)));
        assert!(was_rotated(10, seen(10, None), seen(3, None)));
        // Copied and truncated, then grown past the old offset between two looks.
        assert!(was_rotated(10, seen(10, None), seen(20, Some((10, t)))));
        assert!(!was_rotated(
            10,
            seen(10, Some((10, t))),
            seen(20, Some((10, t)))
        ));
    }

    #[test]
    fn lines_are_split_kept_whole_and_stamped() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut l = Lines::new(false);
        assert_eq!(l.push(b"a\nb", at), b"a\n");
        assert_eq!(l.push(b"c\n", at), b"bc\n");
        assert_eq!(l.push(b"d", at), b"");
        assert_eq!(l.flush(at), b"d\n");
        assert_eq!(l.flush(at), b"");
        let mut l = Lines::new(true);
        assert_eq!(
            String::from_utf8(l.push(b"x\ny\n", at)).unwrap(),
            "2023-11-14T22:13:20.123Z x\n2023-11-14T22:13:20.123Z y\n"
        );
    }

    #[test]
    fn a_large_log_is_sent_in_chunks_of_whole_lines_until_the_client_goes() {
        let d = scratch("chunks");
        let path = d.join("ns_svc_id.log");
        let text: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let mut chunks = Vec::new();
        let mut r = Reader::new(path.clone(), Query::default());
        assert!(
            r.history(&mut |b| {
                chunks.push(b);
                true
            })
            .unwrap()
        );
        assert!(chunks.len() > 1, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.ends_with(b"\n")));
        assert_eq!(chunks.concat(), text.as_bytes());
        // The client gone after the first chunk: reading stops there.
        let mut sent = 0;
        let mut r = Reader::new(path, Query::default());
        assert!(
            !r.history(&mut |_| {
                sent += 1;
                false
            })
            .unwrap()
        );
        assert_eq!(sent, 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn following_reads_across_copy_then_truncate() {
        let d = scratch("follow");
        let path = d.join("ns_svc_id.log");
        let mut w = super::super::open(&path, None).unwrap();
        w.write_all(b"1\n2\n3\n").unwrap();
        let mut r = Reader::new(
            path.clone(),
            Query {
                tail: Some(2),
                ..Query::default()
            },
        );
        assert_eq!(history(&mut r), b"2\n3\n");
        w.write_all(b"4\n5").unwrap();
        assert_eq!(follow(&mut r), b"4\n");
        // 6 lands before the copy: it is read from `.1`; 7 in the new log.
        w.write_all(b"\n6\n").unwrap();
        assert!(super::super::rotate_if_needed(&path, 1).unwrap());
        w.write_all(b"7\n").unwrap();
        assert_eq!(follow(&mut r), b"5\n6\n7\n");
        w.write_all(b"8\n").unwrap();
        assert_eq!(follow(&mut r), b"8\n");

        // A new reader: everything is the rotation, then the log.
        let mut r = Reader::new(path.clone(), Query::default());
        assert_eq!(history(&mut r), b"1\n2\n3\n4\n5\n6\n7\n8\n");
        let mut r = Reader::new(
            path.clone(),
            Query {
                tail: Some(3),
                ..Query::default()
            },
        );
        assert_eq!(history(&mut r), b"6\n7\n8\n");
        // Since: a rotation last written before is left out.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let mut r = Reader::new(
            path.clone(),
            Query {
                since: Some(later),
                ..Query::default()
            },
        );
        assert_eq!(history(&mut r), b"");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
