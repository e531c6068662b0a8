//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of
//! protobuf.
//!
//! The decoding half is pure: [`check`] looks at a buffer and says whether a
//! whole frame is there, [`decode`] takes it out. An incomplete frame is a
//! normal state ([`Ok(None)`](Option::None)), not an error. [`FrameReader`]
//! adds buffered reading from any async byte stream on top.

use bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes in a frame's length prefix.
pub const HEADER_LEN: usize = 4;

/// Default upper bound on a frame's payload, in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the allowed frame size.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// A zero-length frame; every message has at least one field set.
    #[error("empty frame (length prefix 0)")]
    Empty,
    /// The payload is not a valid protobuf message of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} of {expected} bytes received)")]
    Truncated {
        /// Bytes of the frame (prefix included) received before the end.
        buffered: usize,
        /// Bytes the frame needed (prefix included), if the prefix was whole.
        expected: usize,
    },
    /// The rest of a frame did not arrive within the reader's time limit.
    #[error("frame stalled: {buffered} of {expected} bytes received in {after:?}")]
    Stalled {
        /// Bytes of the frame (prefix included) received.
        buffered: usize,
        /// Bytes the frame needed (prefix included).
        expected: usize,
        /// The time limit.
        after: std::time::Duration,
    },
    /// Reading from the underlying stream failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Says whether `buf` begins with a whole frame.
///
/// Returns the frame's total length (prefix included) when it does, `None`
/// when more bytes are needed, and an error as soon as the prefix is known to
/// be invalid, without waiting for the payload.
pub fn check(buf: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    let total = HEADER_LEN + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Takes one whole frame off the front of `buf` and decodes it.
///
/// Leaves `buf` untouched when the frame is incomplete. On a decode error
/// the frame's bytes have been consumed; the caller should treat the stream
/// as broken anyway.
pub fn decode<M: Message + Default>(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<M>, FrameError> {
    let Some(total) = check(buf, max_frame_bytes)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(total);
    frame.advance(HEADER_LEN);
    Ok(Some(M::decode(frame.freeze())?))
}

/// Decodes a frame's payload (the bytes after its length prefix), for
/// readers that take the prefix and the payload apart.
pub fn decode_payload<M: Message + Default>(payload: &[u8]) -> Result<M, FrameError> {
    Ok(M::decode(payload)?)
}

/// Appends `msg` to `dst` as one frame.
pub fn encode<M: Message>(msg: &M, dst: &mut BytesMut) {
    let len = msg.encoded_len();
    dst.reserve(HEADER_LEN + len);
    // A message larger than 4 GiB cannot be built by this crate's callers:
    // batches are bounded long before that.
    dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a BytesMut with enough reserved space cannot fail.
    let _ = msg.encode(dst);
}

/// Encodes `msg` as one frame into a fresh buffer.
pub fn encode_to_vec<M: Message>(msg: &M) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf);
    buf.to_vec()
}

/// Buffered frame reader over an async byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame_bytes: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, refusing frames larger than `max_frame_bytes`.
    pub fn new(inner: R, max_frame_bytes: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
            max_frame_bytes,
        }
    }

    /// Reads the next frame. `Ok(None)` means the stream ended cleanly at a
    /// frame boundary.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            if let Some(msg) = decode(&mut self.buf, self.max_frame_bytes)? {
                return Ok(Some(msg));
            }
            if self.buf.capacity() - self.buf.len() < 8 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let expected = match self.buf.get(..HEADER_LEN) {
                    Some(p) => HEADER_LEN + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
                    None => HEADER_LEN,
                };
                return Err(FrameError::Truncated {
                    buffered: self.buf.len(),
                    expected,
                });
            }
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AgentFrame, MetricBatch, agent_frame};

    fn batch(seq: u64) -> AgentFrame {
        AgentFrame {
            kind: Some(agent_frame::Kind::Batch(MetricBatch {
                sequence: seq,
                series_ids: vec![0, 1],
                time_deltas: vec![5, 0],
                values: vec![1.0, 2.0],
                base_time_unix_nano: 1_700_000_000_000_000_000,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn incomplete_then_complete() {
        let bytes = encode_to_vec(&batch(7));
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            assert!(
                decode::<AgentFrame>(&mut buf, 1024).unwrap().is_none(),
                "byte {i}"
            );
            buf.put_u8(*b);
        }
        let got: AgentFrame = decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(got, batch(7));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_oversize_before_payload_arrives() {
        let mut buf = BytesMut::from(&[0u8, 0, 4, 1][..]);
        match decode::<AgentFrame>(&mut buf, 1024) {
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_empty_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(matches!(
            decode::<AgentFrame>(&mut buf, 1024),
            Err(FrameError::Empty)
        ));
    }

    #[tokio::test]
    async fn reader_reports_truncation_and_clean_end() {
        let mut bytes = encode_to_vec(&batch(1));
        bytes.extend(encode_to_vec(&batch(2)));
        let mut r = FrameReader::new(&bytes[..], 1024);
        assert_eq!(r.next::<AgentFrame>().await.unwrap(), Some(batch(1)));
        assert_eq!(r.next::<AgentFrame>().await.unwrap(), Some(batch(2)));
        assert_eq!(r.next::<AgentFrame>().await.unwrap(), None);

        let cut = &bytes[..bytes.len() - 3];
        let mut r = FrameReader::new(cut, 1024);
        r.next::<AgentFrame>().await.unwrap();
        assert!(matches!(
            r.next::<AgentFrame>().await,
            Err(FrameError::Truncated { .. })
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Arbitrary bytes never panic the decoder: each call yields a
            /// frame, "need more bytes", or an error.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let mut buf = BytesMut::from(&bytes[..]);
                for _ in 0..64 {
                    match decode::<AgentFrame>(&mut buf, 1024) {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            }

            /// Arbitrary payloads behind a valid length prefix decode or fail cleanly.
            #[test]
            fn arbitrary_payloads_fail_cleanly(payload in proptest::collection::vec(any::<u8>(), 1..512)) {
                let mut buf = BytesMut::new();
                buf.put_u32(payload.len() as u32);
                buf.extend_from_slice(&payload);
                let _ = decode::<AgentFrame>(&mut buf, 1024);
            }

            /// Whatever the split of a valid stream into reads, the frames come out whole.
            #[test]
            fn frames_survive_any_chunking(seqs in proptest::collection::vec(any::<u64>(), 1..8), cut in 1usize..64) {
                let mut wire = Vec::new();
                for s in &seqs {
                    wire.extend(encode_to_vec(&batch(*s)));
                }
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for chunk in wire.chunks(cut) {
                    buf.extend_from_slice(chunk);
                    while let Some(f) = decode::<AgentFrame>(&mut buf, 1024).unwrap() {
                        got.push(f);
                    }
                }
                prop_assert_eq!(got, seqs.iter().map(|s| batch(*s)).collect::<Vec<_>>());
            }
        }
    }
}
