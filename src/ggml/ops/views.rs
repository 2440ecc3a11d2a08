//! Views, reshapes and permutations: ops that reinterpret a tensor's
//! memory without computing anything, each checked to stay inside it.

use super::*;

impl Context {
    /// Checks a view's shape and that every byte it can reach lies inside
    /// the memory of the tensor it views (ggml checks only the dense size).
    fn check_view(
        op: &'static str,
        a: Tensor<'_>,
        ne: &[i64],
        nb: &[usize],
        offset: usize,
    ) -> Result<()> {
        let ty = a.ty();
        check_new_shape(op, ty, ne)?;
        // Views of views are anchored at the root tensor, as ggml does.
        let root_ptr = a.view_src_ptr();
        let (root_bytes, base) = if root_ptr.is_null() {
            (a.n_bytes(), offset as u128)
        } else {
            // SAFETY: `a` is alive, and so is the tensor it is a view of (a
            // source of a live tensor lives at least as long).
            let root_bytes = unsafe { sys::ggml_nbytes(root_ptr) };
            (root_bytes, a.view_offs() as u128 + offset as u128)
        };
        let dense: u128 = ne[1..]
            .iter()
            .fold(row_bytes(ty, ne[0]), |acc, &n| acc * n as u128);
        let mut reach = dense;
        if !ne.contains(&0) {
            // Saturating: absurd strides must fail the check, not wrap.
            let strided = ne[1..]
                .iter()
                .zip(nb)
                .map(|(&n, &stride)| (n as u128 - 1).saturating_mul(stride as u128))
                .fold(0u128, u128::saturating_add);
            reach = reach.max(row_bytes(ty, ne[0]).saturating_add(strided));
        } else {
            reach = 0;
        }
        require(
            reach == 0 || base.saturating_add(reach) <= root_bytes as u128,
            op,
            || {
                format!("view {ne:?} (strides {nb:?}) at offset {offset} reaches past the {root_bytes} bytes it views")
            },
        )
    }

    /// A 1-d view of `ne0` elements starting `offset` bytes into `a`.
    #[inline]
    pub fn view_1d<'a>(&'a self, a: Tensor<'a>, ne0: i64, offset: usize) -> Result<Tensor<'a>> {
        Self::check_view("view_1d", a, &[ne0], &[], offset)?;
        call_op!(self, "view_1d", ggml_view_1d(a.as_ptr(), ne0, offset))
    }

    /// A 2-d view: rows `nb1` bytes apart.
    #[inline]
    pub fn view_2d<'a>(
        &'a self,
        a: Tensor<'a>,
        ne0: i64,
        ne1: i64,
        nb1: usize,
        offset: usize,
    ) -> Result<Tensor<'a>> {
        Self::check_view("view_2d", a, &[ne0, ne1], &[nb1], offset)?;
        call_op!(
            self,
            "view_2d",
            ggml_view_2d(a.as_ptr(), ne0, ne1, nb1, offset)
        )
    }

    /// A 3-d view with byte strides `nb1`, `nb2`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn view_3d<'a>(
        &'a self,
        a: Tensor<'a>,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        nb1: usize,
        nb2: usize,
        offset: usize,
    ) -> Result<Tensor<'a>> {
        Self::check_view("view_3d", a, &[ne0, ne1, ne2], &[nb1, nb2], offset)?;
        call_op!(
            self,
            "view_3d",
            ggml_view_3d(a.as_ptr(), ne0, ne1, ne2, nb1, nb2, offset)
        )
    }

    /// A 4-d view with byte strides `nb1`, `nb2`, `nb3`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn view_4d<'a>(
        &'a self,
        a: Tensor<'a>,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
        nb1: usize,
        nb2: usize,
        nb3: usize,
        offset: usize,
    ) -> Result<Tensor<'a>> {
        Self::check_view(
            "view_4d",
            a,
            &[ne0, ne1, ne2, ne3],
            &[nb1, nb2, nb3],
            offset,
        )?;
        call_op!(
            self,
            "view_4d",
            ggml_view_4d(a.as_ptr(), ne0, ne1, ne2, ne3, nb1, nb2, nb3, offset)
        )
    }

    /// A read-only view of 3-d `[ne0, ne1, ne2]` data at `offset` of `a`, seen
    /// `n` times along dim 3 with a zero stride (the same bytes each time).
    /// ggml ops broadcast only where the other operand is larger; this lets a
    /// KV view meet queries laid out one token per dim-3 slice.
    #[allow(clippy::too_many_arguments)]
    pub fn view_3d_repeated<'a>(
        &'a self,
        a: Tensor<'a>,
        ne: [i64; 3],
        nb1: usize,
        nb2: usize,
        offset: usize,
        n: i64,
    ) -> Result<Tensor<'a>> {
        require(n >= 1, "view_3d_repeated", || {
            format!("repeat count {n} must be at least 1")
        })?;
        let v = self.view_4d(
            a,
            ne[0],
            ne[1],
            ne[2],
            1,
            nb1,
            nb2,
            nb2 * ne[2] as usize,
            offset,
        )?;
        // SAFETY: `v` was created just above in this context and nothing refers
        // to it yet; ggml addresses elements through `nb`, so dim 3 with a zero
        // stride reads the checked 3-d range again for every index, never
        // outside it. The view is only ever an operand, never written.
        unsafe {
            let raw = v.as_ptr();
            (*raw).ne[3] = n;
            (*raw).nb[3] = 0;
        }
        Ok(v)
    }

    fn check_reshape(op: &'static str, a: Tensor<'_>, ne: &[i64]) -> Result<()> {
        check_new_shape(op, a.ty(), ne)?;
        require(a.is_contiguous(), op, || {
            "input must be contiguous (use cont first)".into()
        })?;
        let count = ne.iter().try_fold(1i64, |acc, &n| acc.checked_mul(n));
        require(count == Some(a.n_elements() as i64), op, || {
            format!(
                "{:?} has {} elements, {ne:?} does not",
                a.ne(),
                a.n_elements()
            )
        })
    }

    /// The same data seen as 2-d (`a` must be contiguous).
    #[inline]
    pub fn reshape_2d<'a>(&'a self, a: Tensor<'a>, ne0: i64, ne1: i64) -> Result<Tensor<'a>> {
        Self::check_reshape("reshape_2d", a, &[ne0, ne1])?;
        call_op!(self, "reshape_2d", ggml_reshape_2d(a.as_ptr(), ne0, ne1))
    }

    /// The same data seen as 3-d (`a` must be contiguous).
    #[inline]
    pub fn reshape_3d<'a>(
        &'a self,
        a: Tensor<'a>,
        ne0: i64,
        ne1: i64,
        ne2: i64,
    ) -> Result<Tensor<'a>> {
        Self::check_reshape("reshape_3d", a, &[ne0, ne1, ne2])?;
        call_op!(
            self,
            "reshape_3d",
            ggml_reshape_3d(a.as_ptr(), ne0, ne1, ne2)
        )
    }

    /// The same data seen as 4-d (`a` must be contiguous).
    #[inline]
    pub fn reshape_4d<'a>(
        &'a self,
        a: Tensor<'a>,
        ne0: i64,
        ne1: i64,
        ne2: i64,
        ne3: i64,
    ) -> Result<Tensor<'a>> {
        Self::check_reshape("reshape_4d", a, &[ne0, ne1, ne2, ne3])?;
        call_op!(
            self,
            "reshape_4d",
            ggml_reshape_4d(a.as_ptr(), ne0, ne1, ne2, ne3)
        )
    }

    /// Moves dimension `i` of `a` to position `axis_i` (a strided view;
    /// `permute(t, 0, 2, 1, 3)` swaps dims 1 and 2).
    #[inline]
    pub fn permute<'a>(
        &'a self,
        a: Tensor<'a>,
        axis0: usize,
        axis1: usize,
        axis2: usize,
        axis3: usize,
    ) -> Result<Tensor<'a>> {
        let axes = [axis0, axis1, axis2, axis3];
        let distinct = (0..4).all(|i| ((i + 1)..4).all(|j| axes[i] != axes[j]));
        require(axes.iter().all(|&x| x < 4) && distinct, "permute", || {
            format!("{axes:?} is not a permutation of 0..4")
        })?;
        // Each axis is < 4, so the casts are lossless.
        call_op!(
            self,
            "permute",
            ggml_permute(
                a.as_ptr(),
                axis0 as i32,
                axis1 as i32,
                axis2 as i32,
                axis3 as i32
            )
        )
    }

    /// Swaps dimensions 0 and 1 (a strided view).
    #[inline]
    pub fn transpose<'a>(&'a self, a: Tensor<'a>) -> Result<Tensor<'a>> {
        call_op!(self, "transpose", ggml_transpose(a.as_ptr()))
    }
}
