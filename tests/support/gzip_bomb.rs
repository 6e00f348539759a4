//! Gzip bombs for tests, made without compressing (or holding) the zeros: one MiB of
//! zeros is deflated once at the best level after a full flush (which resets the
//! compressor, so the block stands alone) and repeated. Shared by the end-to-end tests
//! (`support::gzip_bomb`) and the host's unit tests (included with `#[path]`).

use flate2::{Compress, Compression, Crc, FlushCompress};

const MIB: usize = 1 << 20;

/// Deflates all of `data` with `flush`.
fn deflate(compress: &mut Compress, data: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    let start = compress.total_in();
    loop {
        let done = (compress.total_in() - start) as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 << 10);
        }
        compress.compress_vec(&data[done..], &mut out, flush).unwrap();
        if (compress.total_in() - start) as usize == data.len() && out.capacity() > out.len() {
            return out;
        }
    }
}

/// A valid gzip stream of `head`, then `zeros_mib` MiB of zero bytes, then `tail`
/// (about 1 KiB of stream per MiB of zeros: a ratio near 1030:1).
pub fn gzip_of(head: &[u8], zeros_mib: u64, tail: &[u8]) -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut compress = Compress::new(Compression::best(), false);
    let head_block = deflate(&mut compress, head, FlushCompress::Full);
    let zero_block = deflate(&mut compress, &zeros, FlushCompress::Full);
    let tail_block = deflate(&mut compress, tail, FlushCompress::Finish);
    let (mut crc, mut zeros_crc, mut tail_crc) = (Crc::new(), Crc::new(), Crc::new());
    crc.update(head);
    zeros_crc.update(&zeros);
    tail_crc.update(tail);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&head_block);
    for _ in 0..zeros_mib {
        out.extend_from_slice(&zero_block);
        crc.combine(&zeros_crc);
    }
    crc.combine(&tail_crc);
    out.extend_from_slice(&tail_block);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}
