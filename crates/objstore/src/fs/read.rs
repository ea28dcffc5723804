//! Objects streamed back from their segment files, each segment's CRC-32C verified whenever it
//! is read whole.

use super::*;

/// Resolves an optional `(first, last-inclusive)` range against `size`.
pub(super) fn resolve_range(
    range: Option<(u64, Option<u64>)>,
    size: u64,
) -> Result<ByteRange, ObjectError> {
    match range {
        None => Ok(ByteRange {
            start: 0,
            end: size,
        }),
        Some((start, _)) if start >= size => Err(ObjectError::InvalidRange(size)),
        Some((start, last)) => Ok(ByteRange {
            start,
            end: last.map_or(size, |l| l.saturating_add(1).min(size)),
        }),
    }
}

/// One segment's share of a read.
pub(super) struct SegmentRead {
    pub(super) file: Arc<std::fs::File>,
    /// Next offset to read.
    pub(super) start: u64,
    pub(super) len: u64,
    /// The CRC-32C to check at the end, when the whole segment is read.
    pub(super) expect: Option<u32>,
    pub(super) name: String,
}

/// Reads `len` bytes at `offset`, failing if the file ends first.
fn read_exact_at(file: &std::fs::File, len: usize, offset: u64) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        let n = file.read_at(&mut buf[filled..], offset + filled as u64)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stored object data is shorter than recorded",
            ));
        }
        filled += n;
    }
    Ok(buf.freeze())
}

/// The body of a read: the segments' bytes in order, each verified when read whole.
pub(super) fn read_stream(parts: Vec<SegmentRead>) -> ByteStream {
    Box::pin(read_segments(parts))
}

fn read_segments(
    parts: Vec<SegmentRead>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync {
    struct State {
        parts: std::vec::IntoIter<SegmentRead>,
        current: Option<(SegmentRead, Option<u32>)>,
    }
    let state = State {
        parts: parts.into_iter(),
        current: None,
    };
    futures::stream::try_unfold(state, |mut st| async move {
        loop {
            let Some((part, hasher)) = st.current.as_mut() else {
                match st.parts.next() {
                    Some(part) => {
                        let hasher = part.expect.is_some().then_some(0u32);
                        st.current = Some((part, hasher));
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if part.len == 0 {
                if let (Some(crc), Some(expect)) = (hasher.take(), part.expect)
                    && crc != expect
                {
                    tracing::error!(file = %part.name, "object data failed its checksum");
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "stored object data failed its checksum",
                    ));
                }
                st.current = None;
                continue;
            }
            let want = usize::try_from(part.len)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK);
            // One positional read per chunk on the blocking pool, straight into the buffer
            // that is sent (no seek state, no intermediate copy).
            let (file, offset) = (part.file.clone(), part.start);
            let buf = tokio::task::spawn_blocking(move || read_exact_at(&file, want, offset))
                .await
                .map_err(std::io::Error::other)??;
            if let Some(crc) = hasher.as_mut() {
                *crc = crc32c::crc32c_append(*crc, &buf);
            }
            part.start += buf.len() as u64;
            part.len -= buf.len() as u64;
            return Ok(Some((buf, st)));
        }
    })
}
