//! Reading files that may be hostile with a bound: never more bytes than a valid file can
//! hold, plus one to tell that there is more (`/dev/zero` as a weights file must not grow
//! until allocation fails). The constnet weights and safetensors readers share it.

/// Appends `reader`'s bytes to `bytes` until it holds `limit + 1` bytes or the reader ends;
/// returns whether it holds at most `limit` (the reader is never read past that byte).
pub(crate) fn read_at_most(
    reader: impl std::io::Read,
    bytes: &mut Vec<u8>,
    limit: u64,
) -> std::io::Result<bool> {
    use std::io::Read as _;
    let want = limit.saturating_add(1).saturating_sub(bytes.len() as u64);
    reader.take(want).read_to_end(bytes)?;
    Ok(bytes.len() as u64 <= limit)
}

/// A reader for the tests of the bounded readers.
#[cfg(test)]
pub(crate) mod testing {
    /// `prefix`, then zeros without end (as `/dev/zero`); counts the bytes handed out.
    pub(crate) struct Endless<'a> {
        /// What comes before the zeros.
        pub prefix: &'a [u8],
        /// Bytes handed out so far.
        pub read: u64,
    }
    impl std::io::Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = if self.prefix.is_empty() {
                buf.fill(0);
                buf.len()
            } else {
                let n = buf.len().min(self.prefix.len());
                buf[..n].copy_from_slice(&self.prefix[..n]);
                self.prefix = &self.prefix[n..];
                n
            };
            self.read += n as u64;
            Ok(n)
        }
    }
}
