//! `Graph<'ctx>`: a compute graph built in a [`Context`].

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::NonNull;

use super::context::{graph_overhead, Context};
use super::error::{GgmlError, Result};
use super::sys;
use super::tensor::Tensor;

/// A compute graph: the nodes (op results) and leafs (inputs, weights) that
/// the expanded outputs depend on, in execution order.
///
/// It lives in its context's pool and can hold at most `size` nodes and
/// `size` leafs; going past that is an error, not an abort. Tensors from
/// any context may be added, and the graph cannot outlive any of them.
pub struct Graph<'ctx> {
    raw: NonNull<sys::ggml_cgraph>,
    ctx: &'ctx Context,
    size: usize,
    /// Every tensor ggml has visited (nodes and leafs), for capacity
    /// accounting and for checking the graph before compute.
    members: Vec<NonNull<sys::ggml_tensor>>,
    seen: HashSet<usize, BuildHasherDefault<AddrHasher>>,
    n_nodes: usize,
    n_leafs: usize,
}

/// Hasher for tensor addresses (already unique; only needs mixing).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        // Fibonacci hashing: spreads the low, 16-byte-aligned address bits.
        self.0 = (n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

impl<'ctx> Graph<'ctx> {
    /// A new empty graph in `ctx` with room for `size` nodes and `size` leafs.
    pub fn new(ctx: &'ctx Context, size: usize) -> Result<Graph<'ctx>> {
        if size == 0 {
            return Err(GgmlError::InvalidArgument(
                "graph size must be at least 1".into(),
            ));
        }
        ctx.ensure_room("graph", graph_overhead(size)?)?;
        // SAFETY: the context is alive and has room for the graph object
        // (checked above; ggml would write through a null pointer otherwise).
        let raw = unsafe { sys::ggml_new_graph_custom(ctx.as_ptr(), size, false) };
        let raw = NonNull::new(raw)
            .ok_or_else(|| GgmlError::InvalidArgument("ggml returned no graph".into()))?;
        Ok(Graph {
            raw,
            ctx,
            size,
            members: Vec::new(),
            seen: HashSet::default(),
            n_nodes: 0,
            n_leafs: 0,
        })
    }

    /// Adds `t` and everything it depends on (that is not in the graph yet).
    pub fn build_forward_expand(&mut self, t: Tensor<'ctx>) -> Result<()> {
        // Walk the new part of the DAG first, the way ggml will, to know
        // whether it fits (ggml asserts otherwise).
        let mut added: Vec<NonNull<sys::ggml_tensor>> = Vec::new();
        let mut stack = vec![t.as_ptr()];
        let (mut nodes, mut leafs) = (0usize, 0usize);
        while let Some(p) = stack.pop() {
            let Some(p) = NonNull::new(p) else { continue };
            if !self.seen.insert(p.as_ptr() as usize) {
                continue;
            }
            added.push(p);
            // SAFETY: `p` is `t` or a (transitive) source of it; sources of a
            // live tensor handle are alive at least as long as the handle.
            let (op, flags, src) = unsafe {
                let r = p.as_ptr();
                ((*r).op, (*r).flags, (*r).src)
            };
            if op == sys::GGML_OP_NONE && (flags & sys::GGML_TENSOR_FLAG_PARAM as i32) == 0 {
                leafs += 1;
            } else {
                nodes += 1;
            }
            stack.extend(src.iter().copied().filter(|s| !s.is_null()));
        }
        let (total_nodes, total_leafs) = (self.n_nodes + nodes, self.n_leafs + leafs);
        if total_nodes > self.size || total_leafs > self.size {
            for p in &added {
                self.seen.remove(&(p.as_ptr() as usize));
            }
            return Err(GgmlError::GraphFull {
                size: self.size,
                nodes: total_nodes,
                leafs: total_leafs,
            });
        }
        // SAFETY: the graph and `t` are alive, and the new nodes and leafs fit
        // (counted above exactly as ggml_visit_parents classifies them).
        unsafe { sys::ggml_build_forward_expand(self.raw.as_ptr(), t.as_ptr()) };
        self.members.extend(added);
        self.n_nodes = total_nodes;
        self.n_leafs = total_leafs;
        debug_assert_eq!(self.n_nodes, self.ggml_n_nodes());
        Ok(())
    }

    fn ggml_n_nodes(&self) -> usize {
        // SAFETY: the graph is alive; ggml reads one field.
        let n = unsafe { sys::ggml_graph_n_nodes(self.raw.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Number of op nodes (what gets computed).
    pub fn n_nodes(&self) -> usize {
        self.n_nodes
    }

    /// Number of leafs (inputs, weights, caches).
    pub fn n_leafs(&self) -> usize {
        self.n_leafs
    }

    /// Capacity for nodes (and, separately, for leafs).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The `i`-th node in execution order (the last one is the last expanded output).
    pub fn node(&self, i: usize) -> Option<Tensor<'ctx>> {
        if i >= self.n_nodes {
            return None;
        }
        // SAFETY: `i` < n_nodes (so it fits an int and ggml's bounds check).
        let raw = unsafe { sys::ggml_graph_node(self.raw.as_ptr(), i as i32) };
        // SAFETY: nodes of the graph are tensors added through handles whose
        // lifetimes are at least 'ctx.
        unsafe { Tensor::from_raw(raw) }
    }

    /// The context the graph lives in.
    pub fn context(&self) -> &'ctx Context {
        self.ctx
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut sys::ggml_cgraph {
        self.raw.as_ptr()
    }

    /// Every node and leaf, in the order they were reached.
    pub(crate) fn members(&self) -> impl Iterator<Item = Tensor<'ctx>> + '_ {
        self.members.iter().filter_map(|p| {
            // SAFETY: members were reached from tensors added through handles
            // living at least 'ctx (or are their sources), so they are alive.
            unsafe { Tensor::from_raw(p.as_ptr()) }
        })
    }
}

impl fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("size", &self.size)
            .field("n_nodes", &self.n_nodes)
            .field("n_leafs", &self.n_leafs)
            .finish()
    }
}
