//! Copying tensor data between Rust memory and backend buffers.

use half::{bf16, f16};

use super::buffer::{is_cpu_extra_buft, is_read_only_buft};
use super::error::{GgmlError, Result};
use super::sys;
use super::tensor::Tensor;
use crate::quant::GgmlType;

/// Plain scalar types for which every bit pattern is a valid value, so
/// their slices can be copied to and from raw tensor bytes.
trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for u16 {}
impl Plain for i32 {}
impl Plain for f32 {}
impl Plain for f16 {}

/// Checks a read or write of `len` bytes at `offset` against the tensor's
/// memory (what ggml would assert on, plus rules of special buffers).
fn check_access(t: Tensor<'_>, offset: usize, len: usize, write: bool) -> Result<()> {
    let buffer = t.data_buffer();
    if !t.has_data() || buffer.is_null() {
        return Err(GgmlError::NotAllocated { name: t.name() });
    }
    let size = t.n_bytes();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(GgmlError::OutOfBounds {
            name: t.name(),
            offset,
            len,
            size,
        });
    }
    // SAFETY: the buffer holds data of a live tensor, so it is alive
    // (contexts pin the buffers their tensors use).
    let buft = unsafe { sys::ggml_backend_buffer_get_type(buffer) };
    if write && is_read_only_buft(buft) {
        return Err(GgmlError::ReadOnly { name: t.name() });
    }
    if is_cpu_extra_buft(buft) {
        // Repacking buffers rearrange data on write and cannot read it back;
        // a write must cover the whole tensor, and only tensors the buffer
        // has a layout for (recorded in `extra` at allocation) may be written.
        if !write {
            return Err(GgmlError::Unsupported(format!(
                "tensor '{}' is stored rearranged in a CPU extra buffer and cannot be read back",
                t.name()
            )));
        }
        if !t.view_src_ptr().is_null() || offset != 0 || len != size {
            return Err(GgmlError::Unsupported(format!(
                "tensor '{}' in a CPU extra buffer must be written whole",
                t.name()
            )));
        }
        if t.extra_ptr().is_null() {
            return Err(GgmlError::Unsupported(format!(
                "the CPU extra buffer of tensor '{}' has no layout for {} {:?} (check weight_supported)",
                t.name(),
                t.ty(),
                t.ne()
            )));
        }
    }
    Ok(())
}

fn set_plain<T: Plain>(t: Tensor<'_>, data: &[T], offset: usize) -> Result<()> {
    let len = std::mem::size_of_val(data);
    check_access(t, offset, len, true)?;
    let _rpc = super::rpc::call_guard();
    // SAFETY: the tensor has memory and `offset..offset+len` lies inside its
    // bytes (checked); `data` is `len` readable bytes of plain scalars; the
    // tensor's buffer accepts this write (checked); nothing else uses the
    // buffer concurrently (ggml objects stay on one thread).
    unsafe { sys::ggml_backend_tensor_set(t.as_ptr(), data.as_ptr().cast(), offset, len) };
    Ok(())
}

fn get_plain<T: Plain>(t: Tensor<'_>, out: &mut [T], offset: usize) -> Result<()> {
    let len = std::mem::size_of_val(out);
    check_access(t, offset, len, false)?;
    let _rpc = super::rpc::call_guard();
    // SAFETY: as in `set_plain`, for a read into `out`'s `len` writable bytes,
    // any bit pattern of which is a valid `T`.
    unsafe { sys::ggml_backend_tensor_get(t.as_ptr(), out.as_mut_ptr().cast(), offset, len) };
    Ok(())
}

/// Writes `bytes` into the tensor's data at byte `offset`.
pub fn tensor_set(t: Tensor<'_>, bytes: &[u8], offset: usize) -> Result<()> {
    set_plain(t, bytes, offset)
}

/// Reads `out.len()` bytes of the tensor's data from byte `offset`.
pub fn tensor_get(t: Tensor<'_>, out: &mut [u8], offset: usize) -> Result<()> {
    get_plain(t, out, offset)
}

/// Checks that `t` is contiguous and has `n` elements, for whole-tensor I/O.
fn check_whole(t: Tensor<'_>, n: usize) -> Result<()> {
    if !t.is_contiguous() {
        return Err(GgmlError::InvalidArgument(format!(
            "tensor '{}' is not contiguous",
            t.name()
        )));
    }
    if t.n_elements() != n {
        return Err(GgmlError::InvalidArgument(format!(
            "tensor '{}' has {} elements, got {n} values",
            t.name(),
            t.n_elements()
        )));
    }
    Ok(())
}

fn type_mismatch(t: Tensor<'_>, expected: &'static str) -> GgmlError {
    GgmlError::TypeMismatch {
        name: t.name(),
        expected,
        actual: t.ty(),
    }
}

/// Writes all elements of a contiguous F32, F16 or BF16 tensor from `f32`
/// values (converted to the tensor's type).
pub fn tensor_set_f32(t: Tensor<'_>, values: &[f32]) -> Result<()> {
    check_whole(t, values.len())?;
    match t.ty() {
        GgmlType::F32 => set_plain(t, values, 0),
        GgmlType::F16 => {
            let bits: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
            set_plain(t, &bits, 0)
        }
        GgmlType::BF16 => {
            let bits: Vec<u16> = values
                .iter()
                .map(|&v| bf16::from_f32(v).to_bits())
                .collect();
            set_plain(t, &bits, 0)
        }
        _ => Err(type_mismatch(t, "F32, F16 or BF16")),
    }
}

/// Writes all elements of a contiguous F16 tensor.
pub fn tensor_set_f16(t: Tensor<'_>, values: &[f16]) -> Result<()> {
    check_whole(t, values.len())?;
    if t.ty() != GgmlType::F16 {
        return Err(type_mismatch(t, "F16"));
    }
    set_plain(t, values, 0)
}

/// Reads all elements of a contiguous F32 tensor into `out`, which must
/// hold exactly that many (no intermediate copy: for big logit tensors).
pub fn tensor_get_f32_into(t: Tensor<'_>, out: &mut [f32]) -> Result<()> {
    check_whole(t, out.len())?;
    if t.ty() != GgmlType::F32 {
        return Err(type_mismatch(t, "F32"));
    }
    get_plain(t, out, 0)
}

/// Reads all elements of a contiguous F32, F16 or BF16 tensor as `f32`.
pub fn tensor_get_f32(t: Tensor<'_>) -> Result<Vec<f32>> {
    let n = t.n_elements();
    check_whole(t, n)?;
    match t.ty() {
        GgmlType::F32 => {
            let mut out = vec![0f32; n];
            tensor_get_f32_into(t, &mut out)?;
            Ok(out)
        }
        GgmlType::F16 | GgmlType::BF16 => {
            let mut bits = vec![0u16; n];
            get_plain(t, &mut bits, 0)?;
            let is_f16 = t.ty() == GgmlType::F16;
            Ok(bits
                .into_iter()
                .map(|b| {
                    if is_f16 {
                        f16::from_bits(b).to_f32()
                    } else {
                        bf16::from_bits(b).to_f32()
                    }
                })
                .collect())
        }
        _ => Err(type_mismatch(t, "F32, F16 or BF16")),
    }
}

/// Writes all elements of a contiguous I32 tensor.
pub fn tensor_set_i32(t: Tensor<'_>, values: &[i32]) -> Result<()> {
    check_whole(t, values.len())?;
    if t.ty() != GgmlType::I32 {
        return Err(type_mismatch(t, "I32"));
    }
    set_plain(t, values, 0)
}

/// Reads all elements of a contiguous I32 tensor.
pub fn tensor_get_i32(t: Tensor<'_>) -> Result<Vec<i32>> {
    let n = t.n_elements();
    check_whole(t, n)?;
    if t.ty() != GgmlType::I32 {
        return Err(type_mismatch(t, "I32"));
    }
    let mut out = vec![0i32; n];
    get_plain(t, &mut out, 0)?;
    Ok(out)
}
