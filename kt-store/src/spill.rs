//! Spilling: a value written to an unlinked file (nothing to clean up, gone with the
//! process) and read back through a read-only mapping of it.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;

/// Writes `bytes` to a new unlinked file in `dir` and maps it read-only.
pub(crate) fn to_file(dir: &Path, bytes: &[u8]) -> std::io::Result<(std::fs::File, Bytes)> {
    let mut file = tempfile::tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.flush()?;
    let mapped = map(&file, bytes.len())?;
    Ok((file, mapped))
}

/// Maps `len` bytes of `file` read-only, as `Bytes`.
pub(crate) fn map(file: &std::fs::File, len: usize) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the file is an unlinked temporary file of this process's own: nothing else
    // can open it by name, and kt never writes to or truncates it after this point, so the
    // mapped bytes stay as they are for as long as the mapping lives.
    let mapping = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(mapping))
}
