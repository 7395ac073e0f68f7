//! Where an HTTP/1.1 message body ends (RFC 9112 §6), so that it can be relayed byte
//! for byte without being decoded.
//!
//! Owns: [`Framing`] — no body, a `Content-Length`, `chunked` (tracked chunk by chunk,
//! trailers included) or until the connection closes. Must never rewrite or buffer the
//! bytes it measures: it only says how many of them belong to the body.

/// The bytes that belong to the message body, and no more (a pipelined next message or
/// garbage after a response stays out).
#[derive(Debug)]
pub(crate) enum Framing {
    /// `remaining` bytes still to come (0 for a message without a body).
    Length(u64),
    Chunked(Chunked),
    /// Everything until the peer closes (a response without length, RFC 9112 §6.3 ¶8).
    UntilClose,
}

/// A malformed chunked body: the connection cannot be used afterwards.
#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body")]
pub(crate) struct BadChunk;

impl Framing {
    /// How many of `bytes` (the next bytes read) belong to the body.
    pub(crate) fn take(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        match self {
            Self::Length(remaining) => {
                let n = usize::try_from(*remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                *remaining -= n as u64;
                Ok(n)
            }
            Self::Chunked(chunked) => chunked.take(bytes),
            Self::UntilClose => Ok(bytes.len()),
        }
    }

    /// Whether the whole body has gone by (never, for a body that ends with the
    /// connection).
    pub(crate) fn is_done(&self) -> bool {
        match self {
            Self::Length(remaining) => *remaining == 0,
            Self::Chunked(chunked) => chunked.state == State::Done,
            Self::UntilClose => false,
        }
    }
}

/// Position inside a chunked body.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    /// The chunk size being read, then the chunk bytes still to come.
    size: u64,
    digits: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
        }
    }

    fn take(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            if self.state == State::Data {
                let n =
                    usize::try_from(self.size).map_or(bytes.len() - i, |s| s.min(bytes.len() - i));
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.state = self.step(bytes[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<State, BadChunk> {
        Ok(match (self.state, b) {
            (State::Size, b) if b.is_ascii_hexdigit() => {
                // 16 hex digits hold any u64; more is an attack on the size.
                if self.digits == 16 {
                    return Err(BadChunk);
                }
                self.digits += 1;
                self.size = self.size << 4 | u64::from(hex(b));
                State::Size
            }
            (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => State::Extension,
            (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
            (State::Extension, b'\r') => State::SizeLf,
            (State::SizeLf, b'\n') => {
                self.digits = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerLine, b'\r') => State::TrailerLf,
            (State::Extension | State::TrailerStart | State::TrailerLine, b'\n') => {
                return Err(BadChunk);
            }
            (State::Extension, _) => State::Extension,
            (State::TrailerStart | State::TrailerLine, _) => State::TrailerLine,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(BadChunk),
        })
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked_len(body: &[u8]) -> Result<usize, BadChunk> {
        let mut f = Framing::Chunked(Chunked::new());
        let n = f.take(body)?;
        assert!(f.is_done(), "not done after {n} bytes");
        Ok(n)
    }

    #[test]
    fn a_chunked_body_ends_after_the_last_chunk_and_trailers() {
        let body = b"5\r\nhello\r\n1a; ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\n";
        let mut with_next = body.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(chunked_len(&with_next).unwrap(), body.len());
    }

    #[test]
    fn a_chunked_body_split_at_every_byte_gives_the_same_end() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut f = Framing::Chunked(Chunked::new());
        for (i, b) in body.iter().enumerate() {
            assert!(!f.is_done(), "done early at {i}");
            assert_eq!(f.take(std::slice::from_ref(b)).unwrap(), 1);
        }
        assert!(f.is_done());
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello",
            b"3\r\nabcX",
            b"11111111111111111\r\n",
            b"0\r\nbad\n",
        ] {
            let mut f = Framing::Chunked(Chunked::new());
            assert!(f.take(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: no panic, never more than given, and the same end
        /// as when read in one piece.
        #[test]
        fn chunk_tracking_does_not_depend_on_how_bytes_arrive(
            chunks in proptest::collection::vec((0usize..300, proptest::bool::ANY), 0..6),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            cut in 0usize..400,
        ) {
            let mut body = Vec::new();
            for (size, ext) in &chunks {
                body.extend_from_slice(format!("{size:x}{}\r\n", if *ext { ";a=b" } else { "" }).as_bytes());
                body.extend(std::iter::repeat_n(b'x', *size));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let complete = chunks.iter().all(|(size, _)| *size > 0);
            body.extend_from_slice(&junk);
            let whole = {
                let mut f = Framing::Chunked(Chunked::new());
                f.take(&body).map(|n| (n, f.is_done()))
            };
            let cut = cut.min(body.len());
            let split = {
                let mut f = Framing::Chunked(Chunked::new());
                f.take(&body[..cut]).and_then(|a| {
                    let b = if f.is_done() { 0 } else { f.take(&body[cut..])? };
                    Ok((a + b, f.is_done()))
                })
            };
            match (&whole, &split) {
                (Ok(w), Ok(s)) => proptest::prop_assert_eq!(w, s),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "whole {whole:?} vs split {split:?}"),
            }
            if complete {
                proptest::prop_assert_eq!(whole.ok(), Some((body.len() - junk.len(), true)));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut f = Framing::Chunked(Chunked::new());
            if let Ok(n) = f.take(&bytes) {
                proptest::prop_assert!(n <= bytes.len());
            }
        }
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut f = Framing::Length(4);
        assert_eq!(f.take(b"ab").unwrap(), 2);
        assert_eq!(f.take(b"cdef").unwrap(), 2);
        assert!(f.is_done());
        assert!(Framing::Length(0).is_done());
        assert!(!Framing::UntilClose.is_done());
    }
}
