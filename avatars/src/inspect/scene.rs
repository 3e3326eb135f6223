//! Scene graph: owns the node hierarchy checks (one parent per node, no
//! cycles, bounded depth) and what is computed by walking the default scene:
//! the model-space bounding box and the triangle and vertex counts.
//!
//! Every walk is iterative with an explicit stack, so no input can exhaust
//! the call stack. The bind pose is used as stored: skins and morph targets
//! are ignored, and a skinned mesh is placed by its node's transform.

use gltf::json;
use gltf::json::accessor::{ComponentType, Type};
use gltf::json::mesh::{Mode, Semantic};
use gltf::json::validation::Checked;

use super::data::{self, Buffers};
use super::{BoundingBox, MAX_NODE_DEPTH, ModelError};

/// Column-major 4×4 matrix, as glTF stores them.
type Mat4 = [f64; 16];

const IDENTITY: Mat4 = [
    1.0, 0.0, 0.0, 0.0, //
    0.0, 1.0, 0.0, 0.0, //
    0.0, 0.0, 1.0, 0.0, //
    0.0, 0.0, 0.0, 1.0,
];

fn corrupted(detail: String) -> ModelError {
    ModelError::Invalid(format!(
        "{detail}; the file is corrupted. Export it again from your 3D tool."
    ))
}

/// The checked node hierarchy.
pub(super) struct Graph {
    /// Parent of each node.
    parent: Vec<Option<usize>>,
}

impl Graph {
    /// Checks that the nodes form a forest no deeper than [`MAX_NODE_DEPTH`].
    pub(super) fn build(root: &json::Root) -> Result<Graph, ModelError> {
        let n = root.nodes.len();
        let mut parent: Vec<Option<usize>> = vec![None; n];
        for (i, node) in root.nodes.iter().enumerate() {
            for child in node.children.iter().flatten() {
                let c = child.value();
                let Some(slot) = parent.get_mut(c) else {
                    return Err(corrupted(format!(
                        "Node {i} has child {c}, which does not exist"
                    )));
                };
                if c == i {
                    return Err(corrupted(format!(
                        "Node {i} is its own child (a cycle in the node hierarchy)"
                    )));
                }
                if let Some(p) = *slot {
                    return Err(corrupted(format!(
                        "Node {c} is a child of both node {p} and node {i}, but a node can have only one parent"
                    )));
                }
                *slot = Some(i);
            }
        }
        // With at most one parent each, the nodes reachable from the
        // parentless ones form trees; any other node sits on a cycle.
        let mut reached = vec![false; n];
        let mut stack: Vec<(usize, usize)> = (0..n)
            .filter(|&i| parent[i].is_none())
            .map(|i| (i, 1))
            .collect();
        while let Some((i, depth)) = stack.pop() {
            if depth > MAX_NODE_DEPTH {
                return Err(ModelError::TooComplex(format!(
                    "The model's node hierarchy is more than {MAX_NODE_DEPTH} levels deep. Simplify the model and export it again."
                )));
            }
            reached[i] = true;
            if let Some(node) = root.nodes.get(i) {
                stack.extend(
                    node.children
                        .iter()
                        .flatten()
                        .map(|c| (c.value(), depth + 1)),
                );
            }
        }
        if let Some(i) = reached.iter().position(|r| !r) {
            return Err(corrupted(format!(
                "The node hierarchy contains a cycle (through node {i})"
            )));
        }
        Ok(Graph { parent })
    }
}

/// What the walk of the default scene found.
pub(super) struct Summary {
    pub bounding_box: BoundingBox,
    pub triangle_count: u64,
    pub vertex_count: u64,
}

/// Walks the default scene (`scene`, else scene 0, else every root node).
pub(super) fn summarize(
    root: &json::Root,
    graph: &Graph,
    buffers: &Buffers<'_>,
) -> Result<Summary, ModelError> {
    let scene_index = root
        .scene
        .map(|s| s.value())
        .or((!root.scenes.is_empty()).then_some(0));
    let roots: Vec<usize> = match scene_index {
        Some(s) => {
            let Some(scene) = root.scenes.get(s) else {
                return Err(corrupted(format!("The default scene {s} does not exist")));
            };
            let mut listed = vec![false; root.nodes.len()];
            let mut roots = Vec::with_capacity(scene.nodes.len());
            for node in &scene.nodes {
                let i = node.value();
                let (Some(parent), Some(seen)) = (graph.parent.get(i), listed.get_mut(i)) else {
                    return Err(corrupted(format!(
                        "Scene {s} lists node {i}, which does not exist"
                    )));
                };
                if let Some(p) = parent {
                    return Err(corrupted(format!(
                        "Scene {s} lists node {i} as a root, but it is a child of node {p}"
                    )));
                }
                if *seen {
                    return Err(corrupted(format!("Scene {s} lists node {i} twice")));
                }
                *seen = true;
                roots.push(i);
            }
            roots
        }
        None => (0..root.nodes.len())
            .filter(|&i| graph.parent.get(i).is_some_and(Option::is_none))
            .collect(),
    };

    let mut bounds = Bounds::default();
    let mut triangle_count = 0u64;
    let mut vertex_count = 0u64;
    let mut stack: Vec<(usize, Mat4)> = roots.into_iter().rev().map(|i| (i, IDENTITY)).collect();
    while let Some((i, parent_world)) = stack.pop() {
        let Some(node) = root.nodes.get(i) else {
            return Err(corrupted(format!("Node {i} does not exist")));
        };
        let world = mul(&parent_world, &local_matrix(i, node)?);
        if let Some(mesh_index) = node.mesh {
            let m = mesh_index.value();
            let Some(mesh) = root.meshes.get(m) else {
                return Err(corrupted(format!(
                    "Node {i} uses mesh {m}, which does not exist"
                )));
            };
            for (p, primitive) in mesh.primitives.iter().enumerate() {
                let counts = add_primitive(root, buffers, &world, (m, p), primitive, &mut bounds)?;
                vertex_count = vertex_count.saturating_add(counts.0);
                triangle_count = triangle_count.saturating_add(counts.1);
            }
        }
        stack.extend(
            node.children
                .iter()
                .flatten()
                .rev()
                .map(|c| (c.value(), world)),
        );
    }

    let bounding_box = bounds.finish()?;
    Ok(Summary {
        bounding_box,
        triangle_count,
        vertex_count,
    })
}

/// Adds one primitive instance to `bounds`; returns its (vertices, triangles).
fn add_primitive(
    root: &json::Root,
    buffers: &Buffers<'_>,
    world: &Mat4,
    (m, p): (usize, usize),
    primitive: &json::mesh::Primitive,
    bounds: &mut Bounds,
) -> Result<(u64, u64), ModelError> {
    let Some(position) = primitive
        .attributes
        .get(&Checked::Valid(Semantic::Positions))
    else {
        return Err(corrupted(format!(
            "Mesh {m}, primitive {p} has no POSITION attribute"
        )));
    };
    let a = position.value();
    let Some(accessor) = root.accessors.get(a) else {
        return Err(corrupted(format!(
            "Mesh {m}, primitive {p} uses accessor {a}, which does not exist"
        )));
    };
    let float_vec3 = matches!(
        (accessor.component_type, accessor.type_),
        (Checked::Valid(c), Checked::Valid(Type::Vec3)) if c.0 == ComponentType::F32
    );
    if !float_vec3 {
        return Err(ModelError::Invalid(format!(
            "Mesh {m}, primitive {p} stores its positions in a format other than float VEC3 (compressed or quantized positions are not supported). Export it again without mesh compression."
        )));
    }
    let vertices = accessor.count.0;
    let stated = match (&accessor.min, &accessor.max) {
        (Some(min), Some(max)) => Some((vec3(min), vec3(max))),
        _ => None,
    };
    let corners = match stated {
        Some((Some(min), Some(max))) => Some((min, max)),
        Some(_) => {
            return Err(corrupted(format!(
                "The POSITION bounds (min/max) of accessor {a} are not three finite numbers each"
            )));
        }
        None => data::vec3_bounds(root, buffers, a)?,
    };
    if vertices > 0
        && let Some((min, max)) = corners
    {
        if (0..3).any(|k| min[k] > max[k]) {
            return Err(corrupted(format!(
                "The POSITION bounds of accessor {a} have min above max"
            )));
        }
        bounds.add_box(world, min, max);
    }

    let drawn = match primitive.indices {
        Some(indices) => root.accessors.get(indices.value()).map_or(0, |i| i.count.0),
        None => vertices,
    };
    let triangles = match primitive.mode {
        Checked::Valid(Mode::Triangles) => drawn / 3,
        Checked::Valid(Mode::TriangleStrip | Mode::TriangleFan) => drawn.saturating_sub(2),
        _ => 0,
    };
    Ok((vertices, triangles))
}

/// Reads `[x, y, z]` from an accessor `min`/`max` value, finite only.
fn vec3(value: &serde_json::Value) -> Option<[f32; 3]> {
    let items = value.as_array()?;
    let [x, y, z] = items.as_slice() else {
        return None;
    };
    let f = |v: &serde_json::Value| v.as_f64().map(|v| v as f32).filter(|v| v.is_finite());
    Some([f(x)?, f(y)?, f(z)?])
}

/// The node's local transform: its matrix, or translation·rotation·scale.
fn local_matrix(i: usize, node: &json::Node) -> Result<Mat4, ModelError> {
    let bad = || {
        corrupted(format!(
            "Node {i} has a transform that is not made of finite numbers"
        ))
    };
    if let Some(m) = node.matrix {
        if !m.iter().all(|v| v.is_finite()) {
            return Err(bad());
        }
        return Ok(m.map(f64::from));
    }
    let t = node.translation.unwrap_or([0.0; 3]).map(f64::from);
    let s = node.scale.unwrap_or([1.0; 3]).map(f64::from);
    let q = node
        .rotation
        .map_or([0.0, 0.0, 0.0, 1.0], |r| r.0)
        .map(f64::from);
    if !(t.iter().chain(&s).chain(&q).all(|v| v.is_finite())) {
        return Err(bad());
    }
    let norm = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(corrupted(format!(
            "Node {i} has a zero rotation quaternion"
        )));
    }
    let [x, y, z, w] = q.map(|v| v / norm);
    // Rotation matrix entries r[row][col].
    let r = [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
        ],
        [
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
        ],
        [
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ];
    let mut m = IDENTITY;
    for col in 0..3 {
        for (row, r_row) in r.iter().enumerate() {
            m[col * 4 + row] = r_row[col] * s[col];
        }
    }
    m[12] = t[0];
    m[13] = t[1];
    m[14] = t[2];
    Ok(m)
}

fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [0.0; 16];
    for col in 0..4 {
        for row in 0..4 {
            out[col * 4 + row] = (0..4).map(|k| a[k * 4 + row] * b[col * 4 + k]).sum();
        }
    }
    out
}

/// Running bounds in f64.
struct Bounds {
    min: [f64; 3],
    max: [f64; 3],
    any: bool,
    non_finite: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min: [f64::INFINITY; 3],
            max: [f64::NEG_INFINITY; 3],
            any: false,
            non_finite: false,
        }
    }
}

impl Bounds {
    /// Adds the 8 corners of the box `min..max` transformed by `m`.
    fn add_box(&mut self, m: &Mat4, min: [f32; 3], max: [f32; 3]) {
        for corner in 0..8 {
            let p = [
                f64::from(if corner & 1 == 0 { min[0] } else { max[0] }),
                f64::from(if corner & 2 == 0 { min[1] } else { max[1] }),
                f64::from(if corner & 4 == 0 { min[2] } else { max[2] }),
            ];
            for k in 0..3 {
                let v = m[k] * p[0] + m[4 + k] * p[1] + m[8 + k] * p[2] + m[12 + k];
                // min/max would skip a NaN: remember it for `finish`.
                self.non_finite |= !v.is_finite();
                self.min[k] = self.min[k].min(v);
                self.max[k] = self.max[k].max(v);
            }
        }
        self.any = true;
    }

    fn finish(self) -> Result<BoundingBox, ModelError> {
        if !self.any {
            return Err(ModelError::Invalid(
                "The model has no geometry: its default scene contains no mesh with vertices. Export it again with the avatar's meshes included."
                    .to_owned(),
            ));
        }
        let min = self.min.map(|v| v as f32);
        let max = self.max.map(|v| v as f32);
        if self.non_finite || !min.iter().chain(&max).all(|v| v.is_finite()) {
            return Err(ModelError::Invalid(
                "The model's size is not a finite number (its node transforms or positions are extreme). Export it again from your 3D tool."
                    .to_owned(),
            ));
        }
        Ok(BoundingBox { min, max })
    }
}
