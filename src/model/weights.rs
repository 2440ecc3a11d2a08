//! A model's weights as ggml tensors. Layers placed on a device (GPU) have
//! their weights copied into that device's memory; on the CPU, matmul
//! weights that the CPU backend can repack go into its repacking buffer type
//! (copied once at load, as llama.cpp does), and everything else points
//! straight into the mapped file (or, with `use_mmap` off, into a copy).

use super::check::{resolve_tensors, Resolved};
use super::hparams::Hparams;
use super::layout::Role;
use super::placement::{Placement, PlacementSpec};
use super::ModelError;
use crate::ggml::{self, BackendBuffer, BufferType, Context, Device, Tensor, TensorId, WeightOp};
use crate::gguf::{GgufFile, TensorInfo};
use std::collections::HashMap;

/// Which context (and so which buffer) a weight lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    Mapped,
    /// One of the CPU's extra (repacking) buffer types: index into `Weights::repacked`.
    Repacked(usize),
    /// Host memory of its own (`-mmp 0`).
    Copied,
    /// Device memory: index into `Weights::on_devices`.
    Device(usize),
}

#[derive(Clone, Copy, Debug)]
pub struct WeightRef {
    home: Home,
    id: TensorId,
}

/// Weight handles by role (a table indexed by [`Role::index`]).
#[derive(Clone, Debug)]
struct ByRole([Option<WeightRef>; Role::COUNT]);

impl Default for ByRole {
    fn default() -> Self {
        ByRole(std::array::from_fn(|_| None))
    }
}

impl ByRole {
    fn get(&self, role: Role) -> Option<WeightRef> {
        self.0[role.index()]
    }

    fn set(&mut self, role: Role, w: WeightRef) {
        self.0[role.index()] = Some(w);
    }
}

/// Handles of one layer's tensors, by role: what a layer has is what its
/// architecture's tensor list named (`model::arch`), checked at load.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    index: u32,
    roles: ByRole,
}

/// How weights are placed.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Use the CPU backend's repacking buffer types for matmul weights.
    pub repack: bool,
    /// Beside each repacked weight that rbench has a generation kernel for
    /// (`kernels::twin_worthy`), keep a plain twin: a copy in the file's
    /// layout, in huge pages, that rbench's kernels read for matmuls of few
    /// tokens, where they outrun the repacked kernels (AMX's above all),
    /// while ggml's repacked kernels keep prompts. It costs the twins'
    /// bytes of memory again, so it is made only where available memory
    /// holds the repacked weights, the twins and 1 GiB more. In runs that
    /// keep such weights plain in the mapped file (nothing repacked, as in
    /// batch-invariant runs), the weight itself is copied into huge pages
    /// the same way: the file's 4 KiB page-cache pages cost generation
    /// about 20% in TLB misses.
    pub plain_twins: bool,
    /// Which layers go to which device (`-ngl`, `-sm`, `-mg`, `-ts`, `-dev`).
    pub placement: PlacementSpec,
    /// Use CPU weights in place in the mapped file (`-mmp 1`); off, they
    /// are copied into memory of their own.
    pub use_mmap: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            repack: true,
            plain_twins: true,
            placement: PlacementSpec::default(),
            use_mmap: true,
        }
    }
}

impl LoadOptions {
    /// For batch-invariant engines: rbench's kernels read the plain block
    /// layout, so with them nothing is repacked (ggml's repacked kernels
    /// sum differently by batch shape).
    /// Where this CPU's rbench kernel does not cover every kernel type (AVX2,
    /// NEON) or there is only the portable reference, ggml keeps its
    /// repacked layouts.
    pub fn for_kernels(kernels: crate::kernels::Kernels) -> LoadOptions {
        // Only a kernel for every type ggml would repack can do without it.
        let best = crate::kernels::best();
        let ours = kernels == crate::kernels::Kernels::Rbench
            && best.isa() != crate::kernels::Isa::Scalar
            && crate::kernels::KERNEL_TYPES
                .iter()
                .all(|&ty| best.supports(ty));
        LoadOptions {
            repack: !ours,
            ..LoadOptions::default()
        }
    }

    /// The same options with weights placed by `placement`.
    pub fn placed(self, placement: PlacementSpec, use_mmap: bool) -> LoadOptions {
        LoadOptions {
            placement,
            use_mmap,
            ..self
        }
    }
}

/// Weights in one device's memory.
struct OnDevice {
    device: Device,
    ctx: Context,
}

pub struct Weights {
    mapped: Context,
    /// One context per CPU extra buffer type, in ggml's preference order.
    repacked: Vec<Context>,
    copied: Context,
    on_devices: Vec<OnDevice>,
    /// Where each layer lives.
    pub placement: Placement,
    /// Whether CPU weights are used in place in the mapped file.
    pub use_mmap: bool,
    /// Bytes copied into each device's memory (in `placement.devices` order).
    pub device_bytes: Vec<(String, u64)>,
    /// Weights of offloaded layers that their device cannot multiply (a
    /// type it lacks, or larger than its buffers allow): kept on the CPU,
    /// where the scheduler runs their matmuls.
    pub kept_on_cpu: Vec<String>,
    /// Tensors outside the layers (embedding, output norm and projection, RoPE factors).
    globals: ByRole,
    pub layers: Vec<LayerWeights>,
    /// Bytes copied into repacking buffers (the rest is used in place from the mapping).
    pub repacked_bytes: u64,
    /// Plain twins of repacked weights (see [`LoadOptions::plain_twins`]).
    twinned: Context,
    /// The twin in `twinned` of each repacked tensor with one, by id.
    twins: HashMap<TensorId, TensorId>,
    /// Bytes of those twins.
    pub twin_bytes: u64,
    /// Bytes of mapped weights read from a huge-page copy instead of the
    /// mapping (see [`LoadOptions::plain_twins`]).
    pub huge_copy_bytes: u64,
    pub repack_buffer: Option<String>,
    pub load_seconds: f64,
}

fn missing(role: Role, layer: Option<u32>) -> ModelError {
    match layer {
        Some(il) => ModelError::Internal(format!("layer {il} has no {role:?} tensor")),
        None => ModelError::Internal(format!("the model has no {role:?} tensor")),
    }
}

fn new_like<'c>(ctx: &'c Context, info: &TensorInfo, name: &str) -> Result<Tensor<'c>, ModelError> {
    let d: Vec<i64> = info.dims.iter().map(|&x| x as i64).collect();
    let t = match d.as_slice() {
        [a] => ctx.new_tensor_1d(info.ggml_type, *a)?,
        [a, b] => ctx.new_tensor_2d(info.ggml_type, *a, *b)?,
        [a, b, c] => ctx.new_tensor_3d(info.ggml_type, *a, *b, *c)?,
        [a, b, c, e] => ctx.new_tensor_4d(info.ggml_type, *a, *b, *c, *e)?,
        _ => {
            return Err(ModelError::Internal(format!(
                "tensor {name} has {} dims",
                d.len()
            )))
        }
    };
    t.set_name(name);
    Ok(t)
}

/// File bytes of the weights placed in `home`.
fn bytes_in(placed: &[(Resolved<'_>, WeightRef, String)], home: Home) -> u64 {
    placed
        .iter()
        .filter(|(_, w, _)| w.home == home)
        .map(|(r, _, _)| r.info.n_bytes)
        .sum()
}

/// One buffer in huge pages holding copies of `parts`, and each part's offset.
fn huge_page_copy<'a>(
    parts: impl Iterator<Item = &'a [u8]>,
) -> Result<(BackendBuffer, Vec<usize>), ModelError> {
    let parts: Vec<&[u8]> = parts.collect();
    // Block starts stay aligned as in the file (32 bytes there).
    let (bytes, offsets) = crate::gguf::SharedBytes::copy_to_huge_pages(&parts, 64)
        .map_err(|e| ModelError::Internal(format!("copying weights into huge pages: {e}")))?;
    Ok((BackendBuffer::from_host_bytes(bytes)?, offsets))
}

/// A failed allocation on a device names the device and the bytes wanted
/// (what was allocated before is freed with the contexts).
fn device_error(
    device: Device,
    placed: &[(Resolved<'_>, WeightRef, String)],
    i: usize,
    e: ModelError,
) -> ModelError {
    match e {
        ModelError::Ggml(ggml::GgmlError::AllocationFailed { .. }) => {
            let wanted = bytes_in(placed, Home::Device(i));
            let (free, total) = device.memory();
            ModelError::DeviceMemory {
                device: device.name(),
                wanted,
                free: free as u64,
                total: total as u64,
            }
        }
        e => e,
    }
}

impl Weights {
    /// Where the layers went, and what stayed behind, in one line.
    pub fn placement_summary(&self) -> String {
        let mut line = self.placement.summary();
        if !self.kept_on_cpu.is_empty() {
            line.push_str("; kept on the CPU: ");
            line.push_str(&self.kept_on_cpu.join(", "));
        }
        line
    }

    /// What the plain twins cost, when there are any (see
    /// [`LoadOptions::plain_twins`]).
    pub fn twins_note(&self) -> Option<String> {
        (self.twin_bytes > 0).then(|| {
            format!(
                "memory: {} of K-quant weights kept twice: repacked ({}) for ggml's kernels, plain for rbench's",
                crate::format::bytes(self.twin_bytes),
                self.repack_buffer.as_deref().unwrap_or("CPU")
            )
        })
    }

    /// What the huge-page copies of mapped weights cost, when there are
    /// any (see [`LoadOptions::plain_twins`]).
    pub fn huge_copy_note(&self) -> Option<String> {
        (self.huge_copy_bytes > 0).then(|| {
            format!(
                "memory: {} of K-quant weights copied from the mapped file into huge pages for rbench's kernels",
                crate::format::bytes(self.huge_copy_bytes)
            )
        })
    }

    /// "placement: ..." when any layer went to a device (nothing for a CPU run).
    pub fn placement_note(&self) -> Option<String> {
        self.placement
            .uses_devices()
            .then(|| format!("placement: {}", self.placement_summary()))
    }

    /// Every context holding weight tensors (for a kept graph to check
    /// that what it uses lives as long as the weights).
    pub fn contexts(&self) -> Vec<&Context> {
        let mut all = vec![&self.mapped, &self.copied, &self.twinned];
        all.extend(&self.repacked);
        all.extend(self.on_devices.iter().map(|d| &d.ctx));
        all
    }

    pub fn load(file: &GgufFile, hp: &Hparams, opts: &LoadOptions) -> Result<Weights, ModelError> {
        let start = std::time::Instant::now();
        let placement = Placement::resolve(&opts.placement, hp.n_layer as usize)?;
        let resolved = resolve_tensors(file, hp)?;
        let tied = !super::check::has_output_tensor(file);
        let n = resolved.len() + 2;
        let mapped = Context::for_tensors(n)?;
        // llama.cpp's order: a weight goes to the first extra buffer type
        // that can run its op (AMX takes plain matmuls, the repacked
        // layouts also experts' mul_mat_id).
        let extras: Vec<BufferType> = if opts.repack {
            ggml::cpu_extra_buffer_types()
        } else {
            Vec::new()
        };
        let repacked = extras
            .iter()
            .map(|_| Context::for_tensors(n))
            .collect::<Result<Vec<_>, _>>()?;
        let copied = Context::for_tensors(n)?;
        let twinned = Context::for_tensors(n)?;
        let probes = Context::for_tensors(n)?;
        let mut on_devices = Vec::with_capacity(placement.devices.len());
        for &device in &placement.devices {
            on_devices.push(OnDevice {
                device,
                ctx: Context::for_tensors(n)?,
            });
        }

        // Decide each tensor's home, then create it in that context.
        let mut placed: Vec<(Resolved<'_>, WeightRef, String)> = Vec::with_capacity(n);
        let mut twin_plan: Vec<(Resolved<'_>, TensorId, TensorId)> = Vec::new();
        let mut plan: Vec<(Resolved<'_>, String, bool)> = Vec::with_capacity(n);
        for r in resolved {
            let wants_repack = !r.spec.role.is_vector() && r.spec.role != Role::TokenEmbd;
            let name = r.spec.name.clone();
            plan.push((r, name, wants_repack));
        }
        if tied {
            if let Some(embd) = plan.iter().find(|(r, _, _)| r.spec.role == Role::TokenEmbd) {
                let mut out = embd.0.clone();
                out.spec.role = Role::Output;
                plan.push((out, "output.weight (tied to token_embd)".to_string(), true));
            }
        }
        let device_index = |d: Device| placement.devices.iter().position(|&x| x == d);
        let mut kept_on_cpu = Vec::new();
        for (r, name, wants_repack) in plan {
            // The token embedding (and RoPE factors) stay on the CPU, as in llama.cpp.
            let device = match (r.spec.layer, r.spec.role) {
                (Some(il), _) => placement.layer_device(il as usize),
                (None, Role::Output | Role::OutputNorm) => placement.output_device(),
                (None, _) => None,
            };
            // A matrix the device cannot multiply (type, or a size beyond its
            // buffer limits) stays on the CPU, as llama.cpp falls back.
            // Whether `buft` can hold this weight for a matmul (a probe tensor asks).
            let op = if r.spec.role.is_experts() {
                WeightOp::MulMatId
            } else {
                WeightOp::MulMat
            };
            let can_multiply = |buft: BufferType| {
                new_like(&probes, r.info, &name)
                    .is_ok_and(|probe| ggml::weight_supported(buft, probe, op))
            };
            let wanted_device = device;
            let device = device
                .filter(|d| r.spec.role.is_vector() || d.buffer_type().is_some_and(can_multiply));
            if let (Some(d), None) = (wanted_device, device) {
                kept_on_cpu.push(format!("{name}, which {} cannot multiply", d.name()));
            }
            let (home, ctx) = if let Some(i) = device.and_then(device_index) {
                (Home::Device(i), &on_devices[i].ctx)
            } else if let Some(i) = extras.iter().position(|&b| wants_repack && can_multiply(b)) {
                (Home::Repacked(i), &repacked[i])
            } else if opts.use_mmap {
                (Home::Mapped, &mapped)
            } else {
                (Home::Copied, &copied)
            };
            let t = new_like(ctx, r.info, &name)?;
            let id = ctx.tensor_id(t)?;
            if matches!(home, Home::Repacked(_))
                && opts.plain_twins
                && crate::kernels::twin_worthy(r.info.ggml_type)
            {
                let twin = new_like(&twinned, r.info, &name)?;
                twin_plan.push((r.clone(), id, twinned.tensor_id(twin)?));
            }
            placed.push((r, WeightRef { home, id }, name));
        }

        // Refused before anything is copied when a device reports too little
        // free memory (an allocation failing later is caught too).
        for (i, d) in on_devices.iter().enumerate() {
            let wanted = bytes_in(&placed, Home::Device(i));
            let (free, total) = d.device.memory();
            if wanted > free as u64 {
                return Err(ModelError::DeviceMemory {
                    device: d.device.name(),
                    wanted,
                    free: free as u64,
                    total: total as u64,
                });
            }
        }
        // Mapped weights that rbench's kernels multiply (the embedding's
        // rows are only looked up).
        let hot = |r: &Resolved<'_>, w: &WeightRef| {
            w.home == Home::Mapped
                && opts.plain_twins
                && r.spec.role != Role::TokenEmbd
                && crate::kernels::super_block_vector_kernel(r.info.ggml_type)
        };
        let hot_bytes: u64 = placed
            .iter()
            .filter(|(r, w, _)| hot(r, w))
            .map(|(r, _, _)| r.info.n_bytes)
            .sum();
        // Measured before the copies take their share.
        let memory =
            (!twin_plan.is_empty() || hot_bytes > 0).then(super::memory::MemoryInfo::detect);
        let repack_planned: u64 = (0..extras.len())
            .map(|i| bytes_in(&placed, Home::Repacked(i)))
            .sum();
        let twin_planned: u64 = twin_plan.iter().map(|(r, _, _)| r.info.n_bytes).sum();
        let copy_hot = hot_bytes > 0
            && memory
                .and_then(|m| m.available)
                .is_some_and(|a| a >= repack_planned + twin_planned + hot_bytes + (1 << 30));
        // Mapped tensors point into the file (or its huge-page copy); the
        // others are copied (and repacked) once.
        let file_buffer = BackendBuffer::from_host_bytes(file.bytes().clone())?;
        // A context keeps the buffers its tensors point into alive.
        if copy_hot {
            let hot_placed: Vec<_> = placed.iter().filter(|(r, w, _)| hot(r, w)).collect();
            let (buffer, offsets) =
                huge_page_copy(hot_placed.iter().map(|(r, _, _)| file.tensor_data(r.info)))?;
            for ((_, w, _), offset) in hot_placed.iter().zip(offsets) {
                mapped.place_tensor(mapped.tensor(w.id)?, &buffer, offset)?;
            }
        }
        let huge_copy_bytes = if copy_hot { hot_bytes } else { 0 };
        for (r, w, _) in placed
            .iter()
            .filter(|(r, w, _)| w.home == Home::Mapped && !(copy_hot && hot(r, w)))
        {
            let t = mapped.tensor(w.id)?;
            mapped.place_tensor(t, &file_buffer, file.tensor_data_offset(r.info) as usize)?;
        }
        let copy_into = |ctx: &Context, home: Home, buft: BufferType| -> Result<u64, ModelError> {
            if !placed.iter().any(|(_, w, _)| w.home == home) {
                return Ok(0);
            }
            ggml::alloc_ctx_tensors(ctx, buft)?.set_usage_weights();
            let mut bytes = 0;
            for (r, w, _) in placed.iter().filter(|(_, w, _)| w.home == home) {
                ggml::tensor_set(ctx.tensor(w.id)?, file.tensor_data(r.info), 0)?;
                bytes += r.info.n_bytes;
            }
            Ok(bytes)
        };
        let mut repacked_bytes = 0u64;
        let mut repack_names = Vec::new();
        for (i, (&buft, ctx)) in extras.iter().zip(&repacked).enumerate() {
            let bytes = copy_into(ctx, Home::Repacked(i), buft)?;
            if bytes > 0 {
                repacked_bytes += bytes;
                repack_names.push(buft.name());
            }
        }
        let repack_buffer = (!repack_names.is_empty()).then(|| repack_names.join(", "));
        let mut twins = HashMap::with_capacity(twin_plan.len());
        let fits = memory
            .and_then(|m| m.available)
            .is_some_and(|a| a >= repacked_bytes + twin_planned + huge_copy_bytes + (1 << 30));
        if twin_planned > 0 && fits {
            let (twin_buffer, offsets) =
                huge_page_copy(twin_plan.iter().map(|(r, _, _)| file.tensor_data(r.info)))?;
            for ((_, primary, twin), offset) in twin_plan.iter().zip(offsets) {
                twinned.place_tensor(twinned.tensor(*twin)?, &twin_buffer, offset)?;
                twins.insert(*primary, *twin);
            }
        }
        let twin_bytes = if twins.is_empty() { 0 } else { twin_planned };
        copy_into(&copied, Home::Copied, BufferType::cpu())?;
        let mut device_bytes = Vec::with_capacity(on_devices.len());
        for (i, d) in on_devices.iter().enumerate() {
            let buft = d.device.buffer_type().ok_or_else(|| {
                ModelError::Internal(format!("device {} has no buffer type", d.device.name()))
            })?;
            let bytes = copy_into(&d.ctx, Home::Device(i), buft)
                .map_err(|e| device_error(d.device, &placed, i, e))?;
            device_bytes.push((d.device.name(), bytes));
        }

        let mut globals = ByRole::default();
        let mut layers: Vec<LayerWeights> = (0..hp.n_layer)
            .map(|index| LayerWeights {
                index,
                roles: ByRole::default(),
            })
            .collect();
        for (r, w, _) in &placed {
            match r.spec.layer {
                None => globals.set(r.spec.role, *w),
                Some(il) => layers
                    .get_mut(il as usize)
                    .ok_or_else(|| ModelError::Internal(format!("{} has no layer", r.spec.name)))?
                    .roles
                    .set(r.spec.role, *w),
            }
        }
        Ok(Weights {
            mapped,
            repacked,
            copied,
            on_devices,
            placement,
            use_mmap: opts.use_mmap,
            device_bytes,
            kept_on_cpu,
            globals,
            layers,
            repacked_bytes,
            twinned,
            twins,
            twin_bytes,
            huge_copy_bytes,
            repack_buffer,
            load_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The tensor behind a handle.
    pub fn get(&self, w: WeightRef) -> Result<Tensor<'_>, ModelError> {
        let ctx = match w.home {
            Home::Mapped => &self.mapped,
            Home::Repacked(i) => &self.repacked[i],
            Home::Copied => &self.copied,
            Home::Device(i) => &self.on_devices[i].ctx,
        };
        Ok(ctx.tensor(w.id)?)
    }

    /// The plain twin of a repacked weight, if it has one (see
    /// [`LoadOptions::plain_twins`]).
    pub fn plain_twin<'w>(&'w self, w: Tensor<'_>) -> Option<Tensor<'w>> {
        if self.twins.is_empty() {
            return None;
        }
        let id = self.repacked.iter().find_map(|ctx| ctx.tensor_id(w).ok())?;
        self.twinned.tensor(*self.twins.get(&id)?).ok()
    }

    pub fn get_opt(&self, w: Option<WeightRef>) -> Result<Option<Tensor<'_>>, ModelError> {
        w.map(|w| self.get(w)).transpose()
    }

    /// A tensor outside the layers that the architecture requires.
    pub fn global(&self, role: Role) -> Result<Tensor<'_>, ModelError> {
        self.get(self.globals.get(role).ok_or_else(|| missing(role, None))?)
    }

    /// An optional tensor outside the layers, if the file has it.
    pub fn global_opt(&self, role: Role) -> Result<Option<Tensor<'_>>, ModelError> {
        self.get_opt(self.globals.get(role))
    }

    /// A tensor of layer `lw` that the architecture requires.
    pub fn layer(&self, lw: &LayerWeights, role: Role) -> Result<Tensor<'_>, ModelError> {
        self.get(
            lw.roles
                .get(role)
                .ok_or_else(|| missing(role, Some(lw.index)))?,
        )
    }

    /// A tensor layer `lw` may have (biases, extra norms).
    pub fn layer_opt(
        &self,
        lw: &LayerWeights,
        role: Role,
    ) -> Result<Option<Tensor<'_>>, ModelError> {
        self.get_opt(lw.roles.get(role))
    }
}
