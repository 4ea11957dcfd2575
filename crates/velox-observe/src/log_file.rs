//! Where the access log's lines go: a file, written past the page cache where the filesystem
//! allows it, or a stream (standard output, a FIFO).
//!
//! A busy edge writes tens of megabytes of log a second. Copied through the page cache, that
//! was a measurable share of each logged request's CPU time (copying, allocating and listing
//! page-cache pages), and it pushed cached data out of memory. With `O_DIRECT`, whole 4 KiB
//! blocks go from an aligned buffer to the device, one write per round of the writer. Lines are
//! formatted straight into that buffer ([`LogFile::room`]): copying a round's text into it
//! took a sixth of the writer's time. The last, partial block waits in the buffer for more
//! lines; when no more come by the writer's next round, it is written through the page cache,
//! so that a reader (`tail -f`) sees every line soon (and the next direct write covers it
//! again: the kernel keeps the two coherent).
//!
//! The file is still appended to as seen from outside: one truncated under it (logrotate's
//! `copytruncate`, `: > access.log`) is continued at its new end. If the filesystem refuses
//! `O_DIRECT`, a direct write fails, or another process appends to the file, writing falls back
//! to plain appends.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The unit of direct I/O: buffer address, length and file offset are multiples of it.
pub const BLOCK: usize = 4096;
/// How much text the buffer takes before it is written: a direct write takes at most this much
/// (240 pages, one virtio request, whose limit is 254 segments), and a round seldom needs more.
const BUF: usize = 240 * BLOCK;

pub enum LogFile {
    Direct(DirectFile),
    /// Plain writes of whole rounds: a file opened to append, standard output or a FIFO.
    Plain(Box<dyn Write + Send>, Unwritten),
}

pub struct DirectFile {
    path: PathBuf,
    /// Opened with `O_DIRECT`: whole blocks only.
    direct: File,
    /// The same file without `O_APPEND`, for the partial block and for reading it back.
    file: File,
    /// `buf[..len]` is the file's content from `pos` on (`pos` a multiple of `BLOCK`); all of
    /// it is in the file already, except `buf[written..len]`. Filled up to `BUF`; one block
    /// more is allocated, for a truncated file's last block read back in front of a full one.
    buf: AlignedBuf,
    len: usize,
    written: usize,
    pos: u64,
    /// A line too long for the buffer's room is formatted here and copied in.
    spill: Unwritten,
    spilled: bool,
}

/// Text waiting to be written: a buffer kept at its largest size (zeroed once), and how much
/// of it is in use.
#[derive(Default)]
pub struct Unwritten {
    bytes: Vec<u8>,
    used: usize,
}

impl Unwritten {
    /// At least `need` bytes after the text in use.
    fn room(&mut self, need: usize) -> &mut [u8] {
        if self.bytes.len() < self.used + need {
            self.bytes.resize(self.used + need, 0);
        }
        &mut self.bytes[self.used..]
    }

    fn text(&self) -> &[u8] {
        &self.bytes[..self.used]
    }
}

impl LogFile {
    /// Opens `path` for appending (created if missing), direct if the filesystem allows.
    pub fn open(path: &Path) -> std::io::Result<LogFile> {
        let append = OpenOptions::new().create(true).append(true).open(path)?;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let file = OpenOptions::new().read(true).write(true).open(path);
        let (Ok(direct), Ok(file)) = (direct, file) else {
            return Ok(LogFile::plain(append));
        };
        let mut d = DirectFile {
            path: path.to_owned(),
            direct,
            file,
            buf: AlignedBuf::new(BUF + BLOCK),
            len: 0,
            written: 0,
            pos: 0,
            spill: Unwritten::default(),
            spilled: false,
        };
        Ok(match d.resume_at_end() {
            Ok(()) => LogFile::Direct(d),
            Err(_) => LogFile::plain(append),
        })
    }

    /// Lines written with plain writes, a round at a time.
    pub fn plain(out: impl Write + Send + 'static) -> LogFile {
        LogFile::Plain(Box::new(out), Unwritten::default())
    }

    pub fn is_direct(&self) -> bool {
        matches!(self, LogFile::Direct(_))
    }

    /// Room for at least `need` bytes of text, to be followed by [`LogFile::filled`] with how
    /// many were written. Writes whole blocks first when the buffer has less room left.
    pub fn room(&mut self, need: usize) -> std::io::Result<&mut [u8]> {
        let spill = need > BUF - BLOCK;
        if let LogFile::Direct(d) = self {
            if !spill && BUF - d.len < need {
                let written = d.write_whole_blocks();
                self.fall_back_on(written)?;
            }
        }
        Ok(match self {
            LogFile::Direct(d) => {
                if spill {
                    d.spilled = true;
                    d.spill.used = 0;
                    d.spill.room(need)
                } else {
                    &mut d.buf.as_mut()[d.len..BUF]
                }
            }
            LogFile::Plain(_, unwritten) => unwritten.room(need),
        })
    }

    /// Takes the first `n` bytes of the last [`LogFile::room`] as text.
    pub fn filled(&mut self, n: usize) -> std::io::Result<()> {
        match self {
            LogFile::Direct(d) if d.spilled => {
                d.spilled = false;
                let line = std::mem::take(&mut d.spill);
                let result = self.append(&line.bytes[..n]);
                if let LogFile::Direct(d) = self {
                    d.spill = line;
                }
                result
            }
            LogFile::Direct(d) => {
                d.len += n;
                Ok(())
            }
            LogFile::Plain(_, unwritten) => {
                unwritten.used += n;
                Ok(())
            }
        }
    }

    /// Appends `data` as text (written by [`LogFile::end_round`] or when the buffer is full).
    pub fn append(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let room = self.room(data.len().min(BUF - BLOCK))?;
            let take = data.len().min(room.len());
            room[..take].copy_from_slice(&data[..take]);
            self.filled(take)?;
            data = &data[take..];
        }
        Ok(())
    }

    /// Ends a writer's round: writes the text's whole blocks, or all of it with `everything`
    /// (the partial block, through the page cache; a stream is flushed), so that a reader sees
    /// every line.
    pub fn end_round(&mut self, everything: bool) -> std::io::Result<()> {
        match self {
            LogFile::Direct(d) => {
                let written = d.write_whole_blocks().and_then(|()| {
                    if everything {
                        d.write_partial()
                    } else {
                        Ok(())
                    }
                });
                self.fall_back_on(written)?;
                if matches!(self, LogFile::Plain(..)) {
                    return self.end_round(everything);
                }
                Ok(())
            }
            LogFile::Plain(out, unwritten) => {
                let written = out.write_all(unwritten.text());
                unwritten.used = 0;
                written.and_then(|()| if everything { out.flush() } else { Ok(()) })
            }
        }
    }

    /// After a failed direct write: appends plainly from now on, starting with what the
    /// buffer had not written.
    fn fall_back_on(&mut self, result: std::io::Result<()>) -> std::io::Result<()> {
        let (Err(error), LogFile::Direct(d)) = (result, &mut *self) else {
            return Ok(());
        };
        tracing::warn!(%error, "direct access-log writing stopped; appending plainly from now on");
        let rest = d.buf.as_mut()[d.written..d.len].to_vec();
        // Taken over by the plain appends: not for the direct file's drop to write.
        d.written = d.len;
        let append = OpenOptions::new().append(true).open(&d.path)?;
        *self = LogFile::plain(append);
        self.append(&rest)
    }
}

impl DirectFile {
    /// Continues at the file's current end: its last partial block is read back into the
    /// buffer, followed by whatever was not in the file yet.
    fn resume_at_end(&mut self) -> std::io::Result<()> {
        let unwritten = self.buf.as_mut()[self.written..self.len].to_vec();
        let size = self.file.metadata()?.len();
        let partial = (size % BLOCK as u64) as usize;
        self.pos = size - partial as u64;
        self.file
            .read_exact_at(&mut self.buf.as_mut()[..partial], self.pos)?;
        self.buf.as_mut()[partial..partial + unwritten.len()].copy_from_slice(&unwritten);
        self.len = partial + unwritten.len();
        self.written = partial;
        Ok(())
    }

    /// A file truncated under us is continued at its new end; one that grew is another
    /// writer's too, which only appending can share.
    fn follow_outside_changes(&mut self) -> std::io::Result<()> {
        let size = self.file.metadata()?.len();
        let ours = self.pos + self.written as u64;
        if size < ours {
            self.resume_at_end()
        } else if size > ours {
            Err(std::io::Error::other(
                "another process appended to the file",
            ))
        } else {
            Ok(())
        }
    }

    /// Writes the whole blocks direct and keeps the partial one at the buffer's start.
    fn write_whole_blocks(&mut self) -> std::io::Result<()> {
        self.follow_outside_changes()?;
        let whole = self.len / BLOCK * BLOCK;
        if whole > 0 {
            self.direct
                .write_all_at(&self.buf.as_mut()[..whole], self.pos)?;
            self.buf.as_mut().copy_within(whole..self.len, 0);
            self.pos += whole as u64;
            self.len -= whole;
            self.written = self.written.saturating_sub(whole);
        }
        Ok(())
    }

    /// Writes the partial block through the page cache.
    fn write_partial(&mut self) -> std::io::Result<()> {
        if self.written < self.len {
            let at = self.pos + self.written as u64;
            self.file
                .write_all_at(&self.buf.as_mut()[self.written..self.len], at)?;
            self.written = self.len;
        }
        Ok(())
    }
}

impl Drop for DirectFile {
    /// Writes what the last round left (a stop ends with [`LogFile::end_round`] already).
    fn drop(&mut self) {
        if self.written == self.len {
            return;
        }
        if let Err(e) = self
            .write_whole_blocks()
            .and_then(|()| self.write_partial())
        {
            tracing::warn!(error = %e, "access log: the last lines could not be written");
        }
    }
}

/// A zeroed buffer aligned to `BLOCK`, as direct I/O needs.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// The buffer is plain owned memory.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(size: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(size, BLOCK).expect("valid layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `layout.size()` initialised (zeroed) bytes, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: usize, to: usize) -> Vec<u8> {
        (from..to)
            .flat_map(|i| {
                format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 97)).into_bytes()
            })
            .collect()
    }

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_round_writes_whole_blocks_and_a_last_round_everything() {
        let d = dir();
        let path = d.path().join("access.log");
        std::fs::write(&path, b"existing line\n").unwrap();
        let mut f = LogFile::open(&path).unwrap();
        let direct_allowed = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .is_ok();
        assert_eq!(f.is_direct(), direct_allowed);
        let mut expected = b"existing line\n".to_vec();
        for (from, to) in [(0, 1), (1, 50), (50, 3000), (3000, 3001), (3001, 12000)] {
            let batch = lines(from, to);
            f.append(&batch).unwrap();
            f.end_round(false).unwrap();
            expected.extend_from_slice(&batch);
            let now = read(&path);
            // Whole blocks are in the file at once (the partial one perhaps not yet).
            assert!(
                now.len() >= expected.len() / BLOCK * BLOCK,
                "lines {from}..{to}"
            );
            assert_eq!(now, expected[..now.len()], "lines {from}..{to}");
            f.end_round(true).unwrap();
            assert_eq!(read(&path), expected, "lines {from}..{to}, flushed");
        }
        assert_eq!(f.is_direct(), direct_allowed, "no fallback on the way");
        // Reopened: continues after the last partial block; dropped: writes its own.
        drop(f);
        let mut f = LogFile::open(&path).unwrap();
        let batch = lines(12000, 12100);
        f.append(&batch).unwrap();
        f.end_round(false).unwrap();
        drop(f);
        expected.extend_from_slice(&batch);
        assert_eq!(read(&path), expected, "reopened");
    }

    #[test]
    fn lines_are_written_into_the_buffer_and_one_longer_than_it_goes_through_a_spill() {
        let d = dir();
        let path = d.path().join("access.log");
        let mut f = LogFile::open(&path).unwrap();
        let mut expected = Vec::new();
        for line in [
            b"short\n".to_vec(),
            [vec![b'x'; BUF + BLOCK], b"\n".to_vec()].concat(),
            b"after\n".to_vec(),
        ] {
            let room = f.room(line.len()).unwrap();
            assert!(room.len() >= line.len());
            room[..line.len()].copy_from_slice(&line);
            f.filled(line.len()).unwrap();
            expected.extend_from_slice(&line);
        }
        f.end_round(true).unwrap();
        assert_eq!(read(&path), expected);
        // A round fills the buffer past its end: whole blocks go out on the way.
        let mut round = Vec::new();
        while round.len() < 2 * BUF {
            let line = lines(round.len(), round.len() + 1);
            f.append(&line).unwrap();
            round.extend_from_slice(&line);
        }
        assert!(read(&path).len() > expected.len() + BUF - BLOCK);
        f.end_round(true).unwrap();
        expected.extend_from_slice(&round);
        assert_eq!(read(&path), expected);
    }

    #[test]
    fn a_file_truncated_under_it_is_continued_at_its_new_end() {
        let d = dir();
        let path = d.path().join("access.log");
        let mut f = LogFile::open(&path).unwrap();
        f.append(&lines(0, 500)).unwrap();
        f.end_round(false).unwrap();
        f.end_round(true).unwrap();
        let truncate = |len| {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(len).unwrap();
        };
        truncate(0);
        let batch = lines(500, 600);
        f.append(&batch).unwrap();
        f.end_round(false).unwrap();
        f.end_round(true).unwrap();
        assert_eq!(read(&path), batch);
        // Truncated inside a block, with lines still waiting in the buffer: the rest of that
        // block is read back and the waiting lines follow it.
        let waiting = lines(600, 601);
        f.append(&waiting).unwrap();
        f.end_round(false).unwrap();
        truncate(5000);
        let more = lines(601, 700);
        f.append(&more).unwrap();
        f.end_round(false).unwrap();
        f.end_round(true).unwrap();
        let mut expected = batch[..5000].to_vec();
        expected.extend_from_slice(&waiting);
        expected.extend_from_slice(&more);
        assert_eq!(read(&path), expected);
    }

    #[test]
    fn another_writer_makes_it_fall_back_to_appending() {
        let d = dir();
        let path = d.path().join("access.log");
        let mut f = LogFile::open(&path).unwrap();
        let first = lines(0, 10);
        f.append(&first).unwrap();
        f.end_round(false).unwrap();
        f.end_round(true).unwrap();
        let mut other = OpenOptions::new().append(true).open(&path).unwrap();
        other.write_all(b"someone else\n").unwrap();
        let second = lines(10, 20);
        f.append(&second).unwrap();
        f.end_round(false).unwrap();
        assert!(!f.is_direct());
        let mut expected = first;
        expected.extend_from_slice(b"someone else\n");
        expected.extend_from_slice(&second);
        assert_eq!(read(&path), expected);
    }
}
