//! SSE framing (the WHATWG event-stream format), incremental and pure: bytes in, events out.
//!
//! Hand-written rather than taken from `sse-stream`/`eventsource-stream` because upstreams send
//! more than the spec: llama.cpp's server reports a failure as an `error: {…}` field line, which
//! `sse-stream` rejects as an invalid line (losing the message) and a strict parser ignores. Here
//! it becomes [`Frame::Error`]. Otherwise per spec: lines end in CRLF, LF or CR (also when split
//! across reads); a leading BOM is skipped; `:` lines are comments (keep-alives); `data:` lines
//! join with `\n`; an empty line dispatches; `event`, `id`, `retry` and unknown fields are
//! ignored; an unfinished event at the end of the body is dropped. Lines are buffered as bytes,
//! so a UTF-8 character split across reads is whole before it is decoded.

use std::collections::VecDeque;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The joined `data:` lines of an event.
    Data(String),
    /// The value of an `error:` field line (llama.cpp), dispatched at once.
    Error(String),
}

/// Incremental SSE decoder: feed it reads with [`FrameDecoder::push`], take events from
/// [`FrameDecoder::next_frame`].
#[derive(Debug)]
pub struct FrameDecoder {
    /// The unfinished line carried over from earlier reads.
    line: Vec<u8>,
    data: String,
    has_data: bool,
    /// The last read ended in CR: a LF at the start of the next one ends nothing.
    skip_lf: bool,
    at_start: bool,
    ready: VecDeque<Frame>,
    invalid_utf8: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            skip_lf: false,
            at_start: true,
            ready: VecDeque::new(),
            invalid_utf8: false,
        }
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one read of the body.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            if self.line.is_empty() {
                self.line_done(&bytes[..end]);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[..end]);
                self.line_done(&line);
                line.clear();
                self.line = line;
            }
            let crlf = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if crlf {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(bytes);
    }

    /// The next complete event, if any; `Err` once a line was not UTF-8.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, &'static str> {
        if let Some(frame) = self.ready.pop_front() {
            return Ok(Some(frame));
        }
        if self.invalid_utf8 {
            return Err("the event stream is not valid UTF-8");
        }
        Ok(None)
    }

    fn line_done(&mut self, mut line: &[u8]) {
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            if std::mem::take(&mut self.has_data) {
                self.ready
                    .push_back(Frame::Data(std::mem::take(&mut self.data)));
            }
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(0) => return, // a comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let wanted = matches!(name, b"data" | b"error");
        if !wanted {
            return;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            self.invalid_utf8 = true;
            return;
        };
        if name == b"error" {
            self.ready.push_back(Frame::Error(value.to_owned()));
        } else {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        out
    }

    fn data(s: &str) -> Frame {
        Frame::Data(s.into())
    }

    #[test]
    fn line_endings_comments_and_multi_line_data() {
        let body = b"\xEF\xBB\xBF: ping\n\ndata: a\r\n\r\ndata:b\rdata: c\r\rid: 1\nevent: x\nretry: y\nfoo\ndata: d\n\n";
        let expected = vec![data("a"), data("b\nc"), data("d")];
        assert_eq!(frames(&[body]), expected);
        for at in 0..body.len() {
            assert_eq!(
                frames(&[&body[..at], &body[at..]]),
                expected,
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(frames(&bytes), expected);
    }

    #[test]
    fn a_character_split_across_reads_is_whole() {
        let body = "data: é👋\n\n".as_bytes();
        for at in 0..body.len() {
            assert_eq!(frames(&[&body[..at], &body[at..]]), [data("é👋")]);
        }
    }

    #[test]
    fn llama_cpp_error_lines_are_frames() {
        let body = b"data: x\n\nerror: {\"code\":400,\"message\":\"too long\"}\n\n";
        assert_eq!(
            frames(&[body]),
            [
                data("x"),
                Frame::Error("{\"code\":400,\"message\":\"too long\"}".into())
            ]
        );
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert_eq!(frames(&[b"data: a\n\ndata: b\n"]), [data("a")]);
        assert_eq!(frames(&[b"data: a"]), []);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = FrameDecoder::new();
        d.push(b"data: \xff\n\n");
        assert!(d.next_frame().is_err());
    }
}
