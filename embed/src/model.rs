//! The encoder of USE-multilingual-v3 over a flat batch of token ids:
//! the 6-bit embedding table (dequantised per row as it is read), a
//! projection and layer norm over the three branches joined (768 values,
//! not per branch), per branch two residual convolutions over n-gram
//! windows (orders 2, 3, 5; windows never cross a sentence), a layer norm
//! over `[embedding | three branches]`, the average over tokens
//! (`sum / sqrt(len)` after the linear map, as the reference does), then
//! the averaging network's dense layers, `tanh`, and L2 normalisation.
//!
//! Matrices are row-major `f32` (`x · W`, `W` as `in × out`, the layout
//! of the reference's arrays). Every dimension but the output's is read
//! from the file, so tests run the same code on a tiny model.

use crate::npz::{Data, Npz, NpzError};
use std::io::{Read, Seek};

/// The embedding width this crate promises (`[f32; DIM]`).
pub const DIM: usize = 512;

/// `(n-gram order, tokens of left context)` of the three branches, with
/// the suffix of their arrays' names.
const BRANCHES: [(usize, usize, &str); 3] = [(2, 0, "2"), (3, 1, "3"), (5, 2, "5")];

/// One convolution branch's weights.
#[derive(Debug)]
struct Branch {
    order: usize,
    left: usize,
    /// `order * cnn × cnn`, and bias.
    w1: Packed,
    b1: Vec<f32>,
    w2: Packed,
    b2: Vec<f32>,
}

/// The model's weights, validated against each other at load.
#[derive(Debug)]
pub struct Model {
    /// Embedding width (512 in the shipped model).
    emb: usize,
    /// Width of one convolution branch (256).
    cnn: usize,
    /// Width of the averaged sentence vector (512).
    sent: usize,
    /// Hidden widths of the dense layers (320, 512).
    hidden: usize,
    wide: usize,
    /// The quantised table: `chunks` blocks of `chunk_rows × emb` codes;
    /// piece id `r` is row `r / chunks` of block `r % chunks` (the
    /// reference interleaves its blocks this way).
    table: Vec<u8>,
    chunks: usize,
    chunk_rows: usize,
    /// Per block: value = code * scale + lo.
    scale: Vec<f32>,
    lo: Vec<f32>,
    proj_w: Packed,
    proj_b: Vec<f32>,
    ln_all_g: Vec<f32>,
    ln_all_b: Vec<f32>,
    branches: Vec<Branch>,
    ln_g: Vec<f32>,
    ln_b: Vec<f32>,
    cnn_w: Packed,
    cnn_b: Vec<f32>,
    d0: Packed,
    p1: Packed,
    d1: Packed,
    d2: Packed,
    p3: Packed,
    d3: Packed,
    eps: f32,
}

/// Reads the arrays, checking names, types and shapes.
struct Reader<'a, R> {
    npz: &'a mut Npz<R>,
}

impl<R: Read + Seek> Reader<'_, R> {
    fn array(&mut self, name: &str) -> Result<(Vec<usize>, Data), String> {
        let a = self.npz.array(name).map_err(|e| match e {
            NpzError::Missing { .. } => format!("{e} (not the USE-multilingual-v3 weights?)"),
            e => e.to_string(),
        })?;
        Ok((a.shape, a.data))
    }

    /// An `f32` array of exactly `shape` (`None` = any length there).
    fn f32s(
        &mut self,
        name: &str,
        shape: &[Option<usize>],
    ) -> Result<(Vec<usize>, Vec<f32>), String> {
        let (got, data) = self.array(name)?;
        let Data::F32(v) = data else {
            return Err(format!("entry {name}.npy is {}, not <f4", data.descr()));
        };
        let fits = got.len() == shape.len()
            && got
                .iter()
                .zip(shape)
                .all(|(g, w)| w.is_none_or(|w| w == *g));
        if !fits || v.iter().any(|x| !x.is_finite()) {
            let want: Vec<String> = shape
                .iter()
                .map(|d| d.map_or("_".into(), |d| d.to_string()))
                .collect();
            return Err(if fits {
                format!("entry {name}.npy holds a value that is not finite")
            } else {
                format!(
                    "entry {name}.npy has shape {got:?}, expected ({})",
                    want.join(", ")
                )
            });
        }
        Ok((got, v))
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>, String> {
        Ok(self.f32s(name, &[Some(rows), Some(cols)])?.1)
    }

    fn packed(&mut self, name: &str, rows: usize, cols: usize) -> Result<Packed, String> {
        Ok(Packed::new(&self.matrix(name, rows, cols)?, rows, cols))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, String> {
        Ok(self.f32s(name, &[Some(len)])?.1)
    }

    /// A matrix whose column count is not known yet.
    fn cols(
        &mut self,
        name: &str,
        rows: Option<usize>,
    ) -> Result<(usize, usize, Vec<f32>), String> {
        let (shape, v) = self.f32s(name, &[rows, None])?;
        Ok((shape[0], shape[1], v))
    }
}

impl Model {
    /// Reads every array the encoder needs; the error names the entry and
    /// what is wrong with it.
    pub fn read<R: Read + Seek>(npz: &mut Npz<R>) -> Result<Model, String> {
        let mut chunks = 0;
        while npz.contains(&format!("q{}", chunks + 1)) {
            chunks += 1;
        }
        if chunks == 0 {
            return Err("entry q1.npy is missing (not the USE-multilingual-v3 weights?)".into());
        }
        let mut r = Reader { npz };
        let mut table = Vec::new();
        let (mut chunk_rows, mut emb) = (0, 0);
        for i in 1..=chunks {
            let name = format!("q{i}");
            let (shape, data) = r.array(&name)?;
            let Data::U8(codes) = data else {
                return Err(format!("entry {name}.npy is {}, not |u1", data.descr()));
            };
            if i == 1 {
                if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
                    return Err(format!(
                        "entry q1.npy has shape {shape:?}, expected (rows, width)"
                    ));
                }
                (chunk_rows, emb) = (shape[0], shape[1]);
                table.reserve_exact(chunks * chunk_rows * emb);
            } else if shape != [chunk_rows, emb] {
                return Err(format!(
                    "entry {name}.npy has shape {shape:?}, expected ({chunk_rows}, {emb}) like q1"
                ));
            }
            table.extend_from_slice(&codes);
        }
        let scale = r.vector("scale", chunks)?;
        let lo = r.vector("lo", chunks)?;
        let (_, cnn, p2) = r.cols("proj2", Some(emb))?;
        let three = 3 * cnn;
        let mut proj_w = vec![0.0; emb * three];
        let mut proj_b = Vec::with_capacity(three);
        let mut ln_all_g = Vec::with_capacity(three);
        let mut ln_all_b = Vec::with_capacity(three);
        let mut branches = Vec::new();
        for (b, &(order, left, suffix)) in BRANCHES.iter().enumerate() {
            let p = if b == 0 {
                p2.clone()
            } else {
                r.matrix(&format!("proj{suffix}"), emb, cnn)?
            };
            // Join the three projections column-wise: one pass over x.
            for (row, src) in proj_w.chunks_exact_mut(three).zip(p.chunks_exact(cnn)) {
                row[b * cnn..(b + 1) * cnn].copy_from_slice(src);
            }
            proj_b.extend(r.vector(&format!("proj_b{suffix}"), cnn)?);
            ln_all_g.extend(r.vector(&format!("ln_g{suffix}"), cnn)?);
            ln_all_b.extend(r.vector(&format!("ln_b{suffix}"), cnn)?);
            branches.push(Branch {
                order,
                left,
                w1: r.packed(&format!("w1_{suffix}"), order * cnn, cnn)?,
                b1: r.vector(&format!("b1_{suffix}"), cnn)?,
                w2: r.packed(&format!("w2_{suffix}"), order * cnn, cnn)?,
                b2: r.vector(&format!("b2_{suffix}"), cnn)?,
            });
        }
        let feat = emb + three;
        let ln_g = r.vector("ln_g", feat)?;
        let ln_b = r.vector("ln_b", feat)?;
        let (_, sent, cnn_w) = r.cols("cnn_W", Some(feat))?;
        let cnn_b = r.vector("cnn_b", sent)?;
        let (_, hidden, d0) = r.cols("d0", Some(sent))?;
        let p1 = r.packed("p1", sent, hidden)?;
        let d1 = r.packed("d1", hidden, hidden)?;
        let (_, wide, d2) = r.cols("d2", Some(hidden))?;
        let p3 = r.packed("p3", hidden, DIM)?;
        let d3 = r.packed("d3", wide, DIM)?;
        let (eps_shape, eps) = r.array("eps")?;
        let eps = match (eps_shape.is_empty(), eps) {
            (true, Data::F64(v)) if v.len() == 1 => v[0] as f32,
            (true, Data::F32(v)) if v.len() == 1 => v[0],
            _ => return Err("entry eps.npy is not a float scalar".into()),
        };
        if !(eps.is_finite() && eps > 0.0) {
            return Err(format!(
                "entry eps.npy is {eps}, expected a small positive number"
            ));
        }
        let proj_w = Packed::new(&proj_w, emb, three);
        let cnn_w = Packed::new(&cnn_w, feat, sent);
        let d0 = Packed::new(&d0, sent, hidden);
        let d2 = Packed::new(&d2, hidden, wide);
        Ok(Model {
            emb,
            cnn,
            sent,
            hidden,
            wide,
            table,
            chunks,
            chunk_rows,
            scale,
            lo,
            proj_w,
            proj_b,
            ln_all_g,
            ln_all_b,
            branches,
            ln_g,
            ln_b,
            cnn_w,
            cnn_b,
            d0,
            p1,
            d1,
            d2,
            p3,
            d3,
            eps,
        })
    }

    /// Multiply-adds of the matrix products for one text of `tokens`
    /// tokens (what the forward pass costs, for benchmarks' ceilings).
    pub fn multiply_adds(&self, tokens: usize) -> u64 {
        let (emb, cnn) = (self.emb as u64, self.cnn as u64);
        let per_token = emb * 3 * cnn
            + self
                .branches
                .iter()
                .map(|b| 2 * b.order as u64 * cnn * cnn)
                .sum::<u64>();
        let (feat, sent, hid, wide) = (
            emb + 3 * cnn,
            self.sent as u64,
            self.hidden as u64,
            self.wide as u64,
        );
        let dim = DIM as u64;
        let per_text =
            feat * sent + 2 * sent * hid + hid * hid + hid * wide + hid * dim + wide * dim;
        tokens as u64 * per_token + per_text
    }

    /// How many piece ids the table covers.
    pub fn rows(&self) -> usize {
        self.chunks * self.chunk_rows
    }

    /// Embeds each sentence of `group` (token ids, every id `< rows()`,
    /// every sentence non-empty) into `out` (one row per sentence).
    pub fn forward(&self, group: &[Vec<u32>], out: &mut [[f32; DIM]]) {
        debug_assert_eq!(group.len(), out.len());
        let (emb, cnn) = (self.emb, self.cnn);
        let three = 3 * cnn;
        let feat = emb + three;
        let tokens: usize = group.iter().map(Vec::len).sum();
        // Sentence bounds in the flat batch.
        let mut bounds = Vec::with_capacity(group.len());
        let mut at = 0;
        for ids in group {
            bounds.push((at, at + ids.len()));
            at += ids.len();
        }

        // [embedding | branch 2 | branch 3 | branch 5] per token.
        let mut feats = vec![0.0f32; tokens * feat];
        for (row, &id) in feats.chunks_exact_mut(feat).zip(group.iter().flatten()) {
            let id = id as usize;
            let (block, index) = (id % self.chunks, id / self.chunks);
            let at = (block * self.chunk_rows + index) * emb;
            let (scale, lo) = (self.scale[block], self.lo[block]);
            for (v, &q) in row[..emb].iter_mut().zip(&self.table[at..at + emb]) {
                *v = f32::from(q) * scale + lo;
            }
        }

        let mut x = repeat_rows(&self.proj_b, tokens);
        matmul(&feats, feat, tokens, &self.proj_w, &mut x, three);
        layer_norm(&mut x, three, &self.ln_all_g, &self.ln_all_b, self.eps);

        let widest = self.branches.iter().map(|b| b.order).max().unwrap_or(1);
        let mut window = vec![0.0f32; tokens * widest * cnn];
        for (b, branch) in self.branches.iter().enumerate() {
            let k = branch.order * cnn;
            // h = relu(window(x_b) · w1 + b1) + x_b
            gather(
                &x,
                three,
                b * cnn,
                cnn,
                &bounds,
                branch,
                &mut window[..tokens * k],
            );
            let mut h = repeat_rows(&branch.b1, tokens);
            matmul(&window, k, tokens, &branch.w1, &mut h, cnn);
            for (hr, xr) in h.chunks_exact_mut(cnn).zip(x.chunks_exact(three)) {
                for (v, &r) in hr.iter_mut().zip(&xr[b * cnn..(b + 1) * cnn]) {
                    *v = v.max(0.0) + r;
                }
            }
            // c = relu(window(h) · w2 + b2) + h, written into feats.
            gather(&h, cnn, 0, cnn, &bounds, branch, &mut window[..tokens * k]);
            let off = emb + b * cnn;
            for row in feats.chunks_exact_mut(feat) {
                row[off..off + cnn].copy_from_slice(&branch.b2);
            }
            matmul(&window, k, tokens, &branch.w2, &mut feats[off..], feat);
            for (fr, hr) in feats.chunks_exact_mut(feat).zip(h.chunks_exact(cnn)) {
                for (v, &r) in fr[off..off + cnn].iter_mut().zip(hr) {
                    *v = v.max(0.0) + r;
                }
            }
        }
        drop(window);
        drop(x);
        layer_norm(&mut feats, feat, &self.ln_g, &self.ln_b, self.eps);

        // Sum per sentence, then project (the sum commutes with the linear
        // map, so it runs once per sentence, not once per token).
        let n = group.len();
        let mut sums = vec![0.0f32; n * feat];
        for (sum, &(a, b)) in sums.chunks_exact_mut(feat).zip(&bounds) {
            for row in feats[a * feat..b * feat].chunks_exact(feat) {
                for (s, &v) in sum.iter_mut().zip(row) {
                    *s += v;
                }
            }
        }
        drop(feats);
        let mut mean = vec![0.0f32; n * self.sent];
        for (m, &(a, b)) in mean.chunks_exact_mut(self.sent).zip(&bounds) {
            let len = (b - a) as f32;
            for (v, &bias) in m.iter_mut().zip(&self.cnn_b) {
                *v = len * bias;
            }
        }
        matmul(&sums, feat, n, &self.cnn_w, &mut mean, self.sent);
        for (m, &(a, b)) in mean.chunks_exact_mut(self.sent).zip(&bounds) {
            let r = 1.0 / ((b - a) as f32).sqrt();
            m.iter_mut().for_each(|v| *v *= r);
        }

        // The averaging network: y0 = relu(m·d0); y1 = relu(m·p1 + y0·d1);
        // y2 = relu(y1·d2); z = tanh(y1·p3 + y2·d3).
        let (hid, wide) = (self.hidden, self.wide);
        let mut y0 = vec![0.0f32; n * hid];
        matmul(&mean, self.sent, n, &self.d0, &mut y0, hid);
        relu(&mut y0);
        let mut y1 = vec![0.0f32; n * hid];
        matmul(&mean, self.sent, n, &self.p1, &mut y1, hid);
        matmul(&y0, hid, n, &self.d1, &mut y1, hid);
        relu(&mut y1);
        let mut y2 = vec![0.0f32; n * wide];
        matmul(&y1, hid, n, &self.d2, &mut y2, wide);
        relu(&mut y2);
        let mut z = vec![0.0f32; n * DIM];
        matmul(&y1, hid, n, &self.p3, &mut z, DIM);
        matmul(&y2, wide, n, &self.d3, &mut z, DIM);
        for (o, zr) in out.iter_mut().zip(z.chunks_exact(DIM)) {
            for (v, &s) in o.iter_mut().zip(zr) {
                *v = s.tanh();
            }
            let norm2: f32 = o.iter().map(|v| v * v).sum();
            let r = 1.0 / norm2.max(self.eps).sqrt();
            o.iter_mut().for_each(|v| *v *= r);
        }
    }
}

/// `rows` copies of `v`, one after another (bias-initialised outputs).
fn repeat_rows(v: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(v.len() * rows);
    for _ in 0..rows {
        out.extend_from_slice(v);
    }
    out
}

fn relu(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = x.max(0.0));
}

/// Layer norm of each `width`-wide row, in place.
fn layer_norm(x: &mut [f32], width: usize, g: &[f32], b: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(width) {
        let mean = row.iter().sum::<f32>() / width as f32;
        row.iter_mut().for_each(|v| *v -= mean);
        let var = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let r = 1.0 / (var + eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(g).zip(b) {
            *v = *v * r * g + b;
        }
    }
}

/// For every token, its n-gram window of `src` rows (`width` values at
/// column `col` of rows `stride` apart), zeros where the window reaches
/// outside the token's sentence.
fn gather(
    src: &[f32],
    stride: usize,
    col: usize,
    width: usize,
    bounds: &[(usize, usize)],
    branch: &Branch,
    out: &mut [f32],
) {
    let k = branch.order * width;
    for &(a, b) in bounds {
        for t in a..b {
            let row = &mut out[t * k..(t + 1) * k];
            for (slot, dst) in row.chunks_exact_mut(width).enumerate() {
                let s = (t + slot)
                    .checked_sub(branch.left)
                    .filter(|s| *s >= a && *s < b);
                match s {
                    Some(s) => {
                        dst.copy_from_slice(&src[s * stride + col..s * stride + col + width])
                    }
                    None => dst.fill(0.0),
                }
            }
        }
    }
}

/// Output columns a kernel keeps in registers per row: two 8-wide AVX
/// vectors (or four SSE/NEON ones).
const TILE: usize = 16;

/// A weight matrix (`k × n`, `x · W`) packed once at load for the kernel:
/// panels of [`TILE`] columns, each panel's `k` rows contiguous (the last
/// panel zero-padded), so the kernel reads weights strictly in order.
#[derive(Debug)]
struct Packed {
    k: usize,
    n: usize,
    panels: Vec<f32>,
    /// The same matrix row-major, for [`matmul`]'s sgemm path.
    plain: Vec<f32>,
}

impl Packed {
    fn new(w: &[f32], k: usize, n: usize) -> Packed {
        debug_assert_eq!(w.len(), k * n);
        let count = n.div_ceil(TILE);
        let mut panels = vec![0.0f32; count * k * TILE];
        for (p, panel) in panels.chunks_exact_mut(k * TILE).enumerate() {
            let c0 = p * TILE;
            let width = TILE.min(n - c0);
            for (dst, row) in panel.chunks_exact_mut(TILE).zip(w.chunks_exact(n)) {
                dst[..width].copy_from_slice(&row[c0..c0 + width]);
            }
        }
        Packed {
            k,
            n,
            panels,
            plain: w.to_vec(),
        }
    }
}

/// From this many rows of `x` on, products go to ndarray's sgemm
/// (matrixmultiply, with the AVX-512/FMA kernels the CPU has), which packs
/// the weights on every call; below it our own kernel on the weights
/// packed at load is faster (it never copies them).
const GEMM_ROWS_MIN: usize = 64;

/// `out += x · w`: `x` is `rows × w.k` (rows `ldx` apart), `out` is
/// `rows × w.n` (rows `ldo` apart). Many rows (token layers of a big
/// batch): sgemm. Few rows (one text's tokens, the per-sentence layers):
/// our own kernel.
fn matmul(x: &[f32], ldx: usize, rows: usize, w: &Packed, out: &mut [f32], ldo: usize) {
    if rows >= GEMM_ROWS_MIN && gemm(x, ldx, rows, w, out, ldo) {
        return;
    }
    small_matmul(x, ldx, rows, w, out, ldo);
}

/// `out += x · w` through ndarray; false (nothing done) if the slices do
/// not fit the shapes, which the callers rule out.
fn gemm(x: &[f32], ldx: usize, rows: usize, w: &Packed, out: &mut [f32], ldo: usize) -> bool {
    use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
    let a = ArrayView2::from_shape((rows, w.k).strides((ldx, 1)), x);
    let b = ArrayView2::from_shape((w.k, w.n), &w.plain[..]);
    let c = ArrayViewMut2::from_shape((rows, w.n).strides((ldo, 1)), out);
    match (a, b, c) {
        (Ok(a), Ok(b), Ok(mut c)) => {
            ndarray::linalg::general_mat_mul(1.0, &a, &b, 1.0, &mut c);
            true
        }
        _ => {
            debug_assert!(false, "matmul shapes do not fit their slices");
            false
        }
    }
}

/// The operands of one [`small_matmul`], handed to [`pulp`]'s dispatch.
struct Small<'a> {
    x: &'a [f32],
    ldx: usize,
    rows: usize,
    w: &'a Packed,
    out: &'a mut [f32],
    ldo: usize,
}

impl pulp::WithSimd for Small<'_> {
    type Output = ();

    /// Runs inside the widest vector context the CPU offers (AVX2+FMA on
    /// x86-64 when present, `S::f32s` 8 wide); everything below is inlined
    /// into it.
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> Self::Output {
        small_kernel(simd, self);
    }
}

/// The kernel for few rows (see [`matmul`]): `x` rows times pre-packed
/// weights, dispatched on the CPU's vector features at run time.
fn small_matmul(x: &[f32], ldx: usize, rows: usize, w: &Packed, out: &mut [f32], ldo: usize) {
    pulp::Arch::new().dispatch(Small {
        x,
        ldx,
        rows,
        w,
        out,
        ldo,
    });
}

/// Panel by panel (each streamed from memory once), rows in blocks of six
/// that share each panel row while it is in registers; one row alone
/// (the per-sentence layers at batch 1) splits `k` over four
/// accumulators so the adds do not wait on each other.
#[inline(always)]
fn small_kernel<S: pulp::Simd>(simd: S, m: Small<'_>) {
    let Small {
        x,
        ldx,
        rows,
        w,
        out,
        ldo,
    } = m;
    for (p, panel) in w.panels.chunks_exact(w.k * TILE).enumerate() {
        let c0 = p * TILE;
        let width = TILE.min(w.n - c0);
        let mut r = 0;
        while r < rows {
            let left = rows - r;
            let done = match left {
                1 => block1(simd, x, ldx, r, panel, out, ldo, c0, width),
                2 => block::<S, 2>(simd, x, ldx, r, panel, out, ldo, c0, width),
                3 => block::<S, 3>(simd, x, ldx, r, panel, out, ldo, c0, width),
                4 => block::<S, 4>(simd, x, ldx, r, panel, out, ldo, c0, width),
                5 => block::<S, 5>(simd, x, ldx, r, panel, out, ldo, c0, width),
                _ => block::<S, 6>(simd, x, ldx, r, panel, out, ldo, c0, width),
            };
            r += done;
        }
    }
}

/// Vectors of `S` per panel row (2 with AVX2, 4 with SSE or NEON, 16
/// scalar).
#[inline(always)]
fn lanes<S: pulp::Simd>() -> usize {
    TILE / S::F32_LANES
}

/// `out[row, c0..c0 + width] += acc` (the accumulators of one row).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn store<S: pulp::Simd>(acc: &[S::f32s; TILE], out: &mut [f32], at: usize, width: usize) {
    let mut tmp = [0.0f32; TILE];
    let (tv, _) = S::as_mut_simd_f32s(&mut tmp);
    for (t, a) in tv.iter_mut().zip(acc) {
        *t = *a;
    }
    for (v, t) in out[at..at + width].iter_mut().zip(&tmp) {
        *v += t;
    }
}

/// `out[r0..r0 + R, c0..c0 + width] += x[r0..r0 + R] · panel`; returns `R`.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
fn block<S: pulp::Simd, const R: usize>(
    simd: S,
    x: &[f32],
    ldx: usize,
    r0: usize,
    panel: &[f32],
    out: &mut [f32],
    ldo: usize,
    c0: usize,
    width: usize,
) -> usize {
    let k = panel.len() / TILE;
    let nv = lanes::<S>();
    let xr: [&[f32]; R] = std::array::from_fn(|i| &x[(r0 + i) * ldx..(r0 + i) * ldx + k]);
    // Only the first `nv` of each row are used (a constant per `S`).
    let mut acc = [[simd.splat_f32s(0.0); TILE]; R];
    for (kk, wr) in panel.chunks_exact(TILE).enumerate() {
        let (wv, _) = S::as_simd_f32s(wr);
        for i in 0..R {
            let a = simd.splat_f32s(xr[i][kk]);
            for v in 0..nv {
                acc[i][v] = simd.mul_add_e_f32s(a, wv[v], acc[i][v]);
            }
        }
    }
    for i in 0..R {
        store::<S>(&acc[i], out, (r0 + i) * ldo + c0, width);
    }
    R
}

/// One row (see [`small_kernel`]); returns 1.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
fn block1<S: pulp::Simd>(
    simd: S,
    x: &[f32],
    ldx: usize,
    r0: usize,
    panel: &[f32],
    out: &mut [f32],
    ldo: usize,
    c0: usize,
    width: usize,
) -> usize {
    const SPLIT: usize = 4;
    let k = panel.len() / TILE;
    let nv = lanes::<S>();
    let xr = &x[r0 * ldx..r0 * ldx + k];
    let mut acc = [[simd.splat_f32s(0.0); TILE]; SPLIT];
    let mut rows = panel.chunks_exact(TILE * SPLIT);
    let mut xs = xr.chunks_exact(SPLIT);
    for (ws, xv) in (&mut rows).zip(&mut xs) {
        for j in 0..SPLIT {
            let a = simd.splat_f32s(xv[j]);
            let (wv, _) = S::as_simd_f32s(&ws[j * TILE..(j + 1) * TILE]);
            for v in 0..nv {
                acc[j][v] = simd.mul_add_e_f32s(a, wv[v], acc[j][v]);
            }
        }
    }
    for (wr, &a) in rows.remainder().chunks_exact(TILE).zip(xs.remainder()) {
        let a = simd.splat_f32s(a);
        let (wv, _) = S::as_simd_f32s(wr);
        for v in 0..nv {
            acc[0][v] = simd.mul_add_e_f32s(a, wv[v], acc[0][v]);
        }
    }
    for v in 0..nv {
        let (a, b) = (
            simd.add_f32s(acc[0][v], acc[1][v]),
            simd.add_f32s(acc[2][v], acc[3][v]),
        );
        acc[0][v] = simd.add_f32s(a, b);
    }
    store::<S>(&acc[0], out, r0 * ldo + c0, width);
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both product paths (sgemm and the packed kernel) and the dispatching `matmul` equal the textbook triple loop, for row counts around the kernel's blocks and the sgemm threshold and widths that are not a multiple of the tile.
    #[test]
    fn matmul_matches_the_naive_product() {
        let shapes = [
            (1, 3, 5),
            (4, 7, 8),
            (5, 16, 19),
            (7, 2, 24),
            (13, 33, 17),
            (GEMM_ROWS_MIN + 3, 9, 40),
        ];
        for (rows, k, n) in shapes {
            let x: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
            let packed = Packed::new(&w, k, n);
            let mut out = vec![1.0f32; rows * n];
            matmul(&x, k, rows, &packed, &mut out, n);
            let mut small = vec![1.0f32; rows * n];
            small_matmul(&x, k, rows, &packed, &mut small, n);
            let mut sgemm = vec![1.0f32; rows * n];
            assert!(gemm(&x, k, rows, &packed, &mut sgemm, n));
            for r in 0..rows {
                for c in 0..n {
                    let want: f32 = 1.0 + (0..k).map(|i| x[r * k + i] * w[i * n + c]).sum::<f32>();
                    for (path, got) in [("matmul", &out), ("kernel", &small), ("sgemm", &sgemm)] {
                        assert!(
                            (got[r * n + c] - want).abs() < 1e-4,
                            "{path} {rows}x{k}x{n} at {r},{c}"
                        );
                    }
                }
            }
        }
    }
}
