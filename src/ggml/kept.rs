//! `KeptGraph`: a graph that outlives the call that built it, so a decode
//! loop can compute it again with new input values instead of building and
//! allocating the same graph every token.
//!
//! A [`Graph`] borrows its context and every tensor in it, which ties it to
//! one stack frame. A kept graph owns its context instead, keeps the
//! contexts of the tensors it uses alive (shared ones by reference count,
//! the others by borrowing them for `'env`), and checks when the graph is
//! handed over that it reaches no tensor anywhere else.

use std::cell::{Cell, OnceCell};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use super::backend::{check_graph, CpuBackend};
use super::context::Context;
use super::error::{GgmlError, Result};
use super::graph::Graph;
use super::tensor::Tensor;

/// A graph kept with everything it points into.
///
/// Build it in three steps: [`KeptGraph::new`] with the graph's own context
/// and the contexts its foreign tensors come from; ops in
/// [`context`](Self::context) and a [`Graph`] there; [`keep`](Self::keep).
/// Then allocate it once ([`Gallocr::alloc_graph`](super::Gallocr) on
/// [`graph`](Self::graph)), and per step set its inputs and
/// [`CpuBackend::compute_kept`] it.
pub struct KeptGraph<'env> {
    /// The kept graph, its lifetime erased. It borrows `ctx` and tensors
    /// that `keep` found in `ctx`, `shared` or `lasting`. Declared first, so
    /// it is dropped before any of them (it has no drop code of its own).
    graph: OnceCell<Graph<'static>>,
    /// Whether `graph` passed the CPU backend's checks (which, once every
    /// member has memory, nothing can make untrue: the allocator that placed
    /// the intermediates is pinned, so they cannot move).
    cpu_checked: Cell<bool>,
    /// Boxed so its address, which the graph holds, survives moves.
    ctx: Box<Context>,
    shared: Vec<Rc<Context>>,
    lasting: Vec<&'env Context>,
    _env: PhantomData<&'env Context>,
}

impl<'env> KeptGraph<'env> {
    /// An empty kept graph with its own context `ctx`. Tensors of the graph
    /// may come from `ctx`, from `shared` (kept alive here) and from
    /// `lasting` (which outlive the kept graph).
    pub fn new(ctx: Context, shared: Vec<Rc<Context>>, lasting: Vec<&'env Context>) -> Self {
        KeptGraph {
            graph: OnceCell::new(),
            cpu_checked: Cell::new(false),
            ctx: Box::new(ctx),
            shared,
            lasting,
            _env: PhantomData,
        }
    }

    /// The kept graph's own context: build the graph's ops here.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Keeps `graph`, which must live in [`context`](Self::context) and
    /// reach only tensors of that context, of a shared context or of a
    /// lasting one ([`GgmlError::ForeignTensor`] otherwise). Once only.
    pub fn keep<'s>(&'s self, graph: Graph<'s>) -> Result<()> {
        if !std::ptr::eq(graph.context(), &*self.ctx) {
            return Err(GgmlError::InvalidArgument(
                "a kept graph must be built in the kept graph's own context".into(),
            ));
        }
        if let Some(t) = graph.members().find(|&t| !self.may_hold(t)) {
            return Err(GgmlError::ForeignTensor { name: t.name() });
        }
        // SAFETY: the graph borrows `self.ctx` (checked above; boxed, so its
        // address is fixed until `self` drops) and tensors whose metadata
        // lives in `self.ctx`, in a shared context this object keeps alive,
        // or in a lasting context that outlives `'env` and so `self` (checked
        // for every member: each node and leaf, and through them every source
        // and view source ggml follows). Each such context pins the buffers
        // its tensors' data points into. The erased lifetime is never handed
        // out: `graph()` shortens it to a borrow of `self`, and the field is
        // dropped first.
        let erased = unsafe { std::mem::transmute::<Graph<'s>, Graph<'static>>(graph) };
        self.graph
            .set(erased)
            .map_err(|_| GgmlError::InvalidArgument("this kept graph already has a graph".into()))
    }

    fn may_hold(&self, t: Tensor<'_>) -> bool {
        self.ctx.owns(t)
            || self.shared.iter().any(|c| c.owns(t))
            || self.lasting.iter().any(|c| c.owns(t))
    }

    /// The kept graph, once [`keep`](Self::keep) has taken it.
    pub fn graph(&self) -> Option<&Graph<'_>> {
        self.graph.get()
    }
}

impl CpuBackend {
    /// Computes a kept graph; the checks [`compute`](Self::compute) makes
    /// run on its first compute only (see `KeptGraph::cpu_checked`).
    pub fn compute_kept(&mut self, kept: &KeptGraph<'_>) -> Result<()> {
        let graph = kept.graph().ok_or_else(|| {
            GgmlError::InvalidArgument("the kept graph has not been given a graph".into())
        })?;
        if !kept.cpu_checked.get() {
            check_graph(Some(self.backend()), graph)?;
            kept.cpu_checked.set(true);
        }
        self.compute_checked(graph)
    }
}

impl fmt::Debug for KeptGraph<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptGraph")
            .field("graph", &self.graph.get())
            .field("shared", &self.shared.len())
            .field("lasting", &self.lasting.len())
            .finish()
    }
}
