//! A gzip body built from pieces compressed on their own, so that a body whose
//! parts change one at a time is compressed again only where it changed.
//!
//! Deflate (RFC 1951) is a sequence of blocks; a decoder reads them in order and
//! a back-reference never reaches before the start of what one compressor saw.
//! So pieces each deflated by a fresh compressor and ended with a sync flush
//! (non-final blocks, byte-aligned) can be laid back to back, closed by an
//! empty final block, and wrapped in a gzip header and trailer (RFC 1952) whose
//! CRC-32 is combined from the pieces' own. The seat map (`super::seats`) keeps
//! one piece per thousand seats: a hold recompresses a thousandth of a 50 000-seat
//! map, not 3.4 MB.

use flate2::Compression;
use flate2::write::DeflateEncoder;
use std::io::Write;

/// Some text, deflated, with what the gzip trailer needs of it.
#[derive(Clone, Debug)]
pub struct Piece {
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Piece {
    /// `text` deflated (fast level: a map is compressed while fans wait).
    pub fn deflate(text: &[u8]) -> std::io::Result<Piece> {
        let mut encoder =
            DeflateEncoder::new(Vec::with_capacity(text.len() / 8 + 64), Compression::fast());
        encoder.write_all(text)?;
        // A sync flush: everything out, byte-aligned, and no final block.
        encoder.flush()?;
        let deflated = std::mem::take(encoder.get_mut());
        Ok(Piece::of(text, deflated))
    }

    /// `text` as it is, in stored blocks (for a few bytes, where a compressor
    /// would cost more than it saves).
    pub fn stored(text: &[u8]) -> Piece {
        let mut out = Vec::with_capacity(text.len() + 5 * (text.len() / 0xffff + 1));
        for part in text.chunks(0xffff) {
            // BFINAL 0, BTYPE 00, padded to the byte; then LEN and its complement.
            let len = part.len() as u16;
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(part);
        }
        Piece::of(text, out)
    }

    fn of(text: &[u8], deflated: Vec<u8>) -> Piece {
        let mut crc = crc32fast::Hasher::new();
        crc.update(text);
        Piece {
            deflated,
            crc,
            len: text.len() as u64,
        }
    }

    /// The length of the text it holds.
    pub fn text_len(&self) -> u64 {
        self.len
    }
}

/// The gzip member of the pieces' texts, in order.
pub fn gzip<'a>(pieces: impl IntoIterator<Item = &'a Piece>) -> Vec<u8> {
    // ID1 ID2, CM deflate, no flags, no mtime, no extra flags, OS unknown.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    for piece in pieces {
        out.extend_from_slice(&piece.deflated);
        crc.combine(&piece.crc);
        len += piece.len;
    }
    // An empty final block (BFINAL 1, fixed codes, end of block).
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;

    /// A gzip body decompressed (its CRC and length checked), or a panic.
    pub(crate) fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn pieces_laid_back_to_back_read_as_their_texts_in_order() {
        let a = br#"{"seat_id":1,"status":"AVAILABLE"},"#.repeat(500);
        let b = br#"{"seat_id":2,"status":"SOLD"},"#.repeat(300);
        let pieces = [
            Piece::stored(b"{\"seats\":["),
            Piece::deflate(&a).unwrap(),
            Piece::deflate(b"").unwrap(),
            Piece::deflate(&b).unwrap(),
            Piece::stored(b"]}"),
        ];
        let body = gzip(&pieces);
        let mut want = b"{\"seats\":[".to_vec();
        want.extend_from_slice(&a);
        want.extend_from_slice(&b);
        want.extend_from_slice(b"]}");
        assert_eq!(gunzip(&body), want);
        assert!(body.len() * 10 < want.len(), "repetitive text compresses");
        // The same piece may stand in two places (a cached piece reused).
        assert_eq!(
            gunzip(&gzip([&pieces[3], &pieces[3]])),
            [b.clone(), b].concat()
        );
    }

    #[test]
    fn stored_pieces_split_past_65535_bytes_and_nothing_is_a_valid_body() {
        let long: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(gunzip(&gzip([&Piece::stored(&long)])), long);
        assert_eq!(gunzip(&gzip([])), b"");
        assert_eq!(gunzip(&gzip([&Piece::stored(b"")])), b"");
    }
}
