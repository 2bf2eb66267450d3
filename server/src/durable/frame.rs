//! Records on disk: `[magic u32][len u32][crc32 u32][body]`, the CRC taken
//! over the magic, the length and the body, so a record is only believed
//! when all of it is what was written.
//!
//! The magic makes a record findable again after damage: a [`Scanner`]
//! that meets bytes which are not a record (zeros from a lost block, a torn
//! write, garbage) skips forward to the next place where a whole record
//! with a matching CRC starts, and reports what it skipped. A header of
//! zeros is never a record (its magic is wrong), unlike a bare
//! `[len][crc]` header, where the CRC of an empty body is 0.

use std::io::{self, Read};

/// Not ASCII and not a small integer, so it rarely appears inside bodies
/// (channel names, Unix times, floats); when it does, the CRC rejects it.
pub const MAGIC: [u8; 4] = [0xd5, 0x7a, 0x1f, 0x9e];
pub const HEADER: usize = 12;
/// The largest body a record may carry. A longer length in a header is
/// damage, which also bounds what a scan ever holds in memory.
pub const MAX_BODY: usize = 1 << 20;

/// Appends `body` to `out` as one record.
pub fn put(out: &mut Vec<u8>, body: &[u8]) {
    debug_assert!(body.len() <= MAX_BODY);
    let len = (body.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&MAGIC);
    crc.update(&len);
    crc.update(body);
    out.reserve(HEADER + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(body);
}

/// What a scan meets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A whole record: where it starts and ends, and its body.
    Record {
        start: u64,
        end: u64,
        body: &'a [u8],
    },
    /// Bytes that are not part of any whole record.
    Damage { start: u64, end: u64 },
}

/// Reads records from a byte stream in bounded memory (one body and one
/// read-ahead), resynchronising past damage. Positions count from `start`
/// as given to [`Scanner::new`].
pub struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// Index in `buf` of the byte at position `pos`.
    at: usize,
    pos: u64,
    eof: bool,
    /// Where a run of damage began, while one is being skipped.
    damage_from: Option<u64>,
}

const READ_AHEAD: usize = 64 * 1024;

impl<R: Read> Scanner<R> {
    pub fn new(reader: R, start: u64) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(READ_AHEAD),
            at: 0,
            pos: start,
            eof: false,
            damage_from: None,
        }
    }

    /// The position up to which the stream has been accounted for.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next record or run of damage; `None` at the end of the stream.
    /// A run of damage is reported whole, before the record that ends it.
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        loop {
            self.fill(HEADER)?;
            let available = self.buf.len() - self.at;
            if available < HEADER {
                // Nothing, or a header cut short by the end of the stream.
                self.skip(available);
                return Ok(self.take_damage());
            }
            match self.record_here()? {
                Some(len) => {
                    if let Some(from) = self.damage_from.take() {
                        // Report the damage first; the record is read again
                        // (and checked again) at the next call.
                        return Ok(Some(Item::Damage {
                            start: from,
                            end: self.pos,
                        }));
                    }
                    let start = self.pos;
                    let total = HEADER + len;
                    let body_at = self.at + HEADER;
                    self.at += total;
                    self.pos += total as u64;
                    return Ok(Some(Item::Record {
                        start,
                        end: self.pos,
                        body: &self.buf[body_at..body_at + len],
                    }));
                }
                None => {
                    // Not a record here: skip to the next byte that could
                    // begin a magic, without holding more than a window.
                    let window = &self.buf[self.at + 1..];
                    let step = window
                        .windows(MAGIC.len())
                        .position(|w| w == MAGIC)
                        .map_or(window.len().saturating_sub(MAGIC.len() - 1), |i| i)
                        + 1;
                    self.skip(step);
                }
            }
        }
    }

    /// The body length of a whole, intact record at the current position.
    fn record_here(&mut self) -> io::Result<Option<usize>> {
        let header = &self.buf[self.at..self.at + HEADER];
        if header[..4] != MAGIC {
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_BODY {
            return Ok(None);
        }
        self.fill(HEADER + len)?;
        if self.buf.len() - self.at < HEADER + len {
            // Runs past the end: a torn last record, or a false magic.
            return Ok(None);
        }
        let record = &self.buf[self.at..self.at + HEADER + len];
        let stored = u32::from_le_bytes([record[8], record[9], record[10], record[11]]);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record[..8]);
        crc.update(&record[HEADER..]);
        Ok((crc.finalize() == stored).then_some(len))
    }

    fn skip(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.damage_from.get_or_insert(self.pos);
        self.at += n;
        self.pos += n as u64;
    }

    fn take_damage(&mut self) -> Option<Item<'static>> {
        self.damage_from.take().map(|start| Item::Damage {
            start,
            end: self.pos,
        })
    }

    /// Makes at least `want` bytes from the current position available,
    /// unless the stream ends first.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.buf.len() - self.at < want && !self.eof {
            if self.at > 0 {
                self.buf.drain(..self.at);
                self.at = 0;
            }
            let have = self.buf.len();
            let target = want.max(READ_AHEAD);
            self.buf.resize(target, 0);
            let read = loop {
                match self.reader.read(&mut self.buf[have..]) {
                    Ok(n) => break n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        self.buf.truncate(have);
                        return Err(err);
                    }
                }
            };
            self.buf.truncate(have + read);
            if read == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for body in bodies {
            put(&mut out, body);
        }
        out
    }

    /// Bodies found, and the damage as (start, end).
    fn scan(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<(u64, u64)>) {
        let mut scanner = Scanner::new(bytes, 0);
        let (mut found, mut damage) = (Vec::new(), Vec::new());
        while let Some(item) = scanner.next_item().unwrap() {
            match item {
                Item::Record { body, .. } => found.push(body.to_vec()),
                Item::Damage { start, end } => damage.push((start, end)),
            }
        }
        assert_eq!(scanner.position(), bytes.len() as u64);
        (found, damage)
    }

    #[test]
    fn whole_records_read_back_with_their_positions() {
        let bytes = records(&[b"one", b"", b"three"]);
        let mut scanner = Scanner::new(&bytes[..], 100);
        let Some(Item::Record { start, end, body }) = scanner.next_item().unwrap() else {
            panic!("a record");
        };
        assert_eq!((start, end, body), (100, 100 + 15, &b"one"[..]));
        let (found, damage) = scan(&bytes);
        assert_eq!(found, [&b"one"[..], b"", b"three"]);
        assert!(damage.is_empty());
    }

    #[test]
    fn a_zero_header_is_damage_not_an_empty_record() {
        let mut bytes = records(&[b"before"]);
        bytes.extend_from_slice(&[0; 4096]);
        let after = bytes.len() as u64;
        bytes.extend(records(&[b"after"]));
        let (found, damage) = scan(&bytes);
        assert_eq!(found, [&b"before"[..], b"after"]);
        assert_eq!(damage, [(18, after)]);
    }

    #[test]
    fn a_flipped_bit_costs_only_its_record() {
        let mut bytes = records(&[b"first", b"second", b"third"]);
        bytes[17 + 12 + 2] ^= 0x10;
        let (found, damage) = scan(&bytes);
        assert_eq!(found, [&b"first"[..], b"third"]);
        assert_eq!(damage, [(17, 17 + 18)]);
    }

    #[test]
    fn a_magic_inside_a_body_is_not_taken_for_a_record() {
        let mut body = b"xx".to_vec();
        body.extend_from_slice(&MAGIC);
        body.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c']);
        let mut bytes = records(&[&body]);
        // Damage the outer header: the scan resynchronises inside the body
        // and must not accept the fake record there.
        bytes[9] ^= 1;
        let (found, damage) = scan(&bytes);
        assert!(found.is_empty());
        assert_eq!(damage, [(0, bytes.len() as u64)]);
    }

    #[test]
    fn an_oversized_length_is_damage() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend(records(&[b"ok"]));
        let (found, damage) = scan(&bytes);
        assert_eq!(found, [&b"ok"[..]]);
        assert_eq!(damage, [(0, 12)]);
    }

    #[test]
    fn records_larger_than_the_read_ahead_are_read_whole() {
        let big = vec![7u8; READ_AHEAD * 3 + 5];
        let bytes = records(&[b"a", &big, b"b"]);
        let (found, damage) = scan(&bytes);
        assert_eq!(found.len(), 3);
        assert_eq!(found[1], big);
        assert!(damage.is_empty());
    }
}
