//! The library's modules depend on each other one way: core ← kernels ← layers ← combinators
//! ← networks ← training, files, pictures. This test reads `src/` and fails on an import
//! cycle, and on a core or kernel module that imports anything above it, so that the
//! structure cannot quietly tangle again (before `zeroed.rs` held every layer's `Zeroable`
//! impl, and 16 modules formed one cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module's level; a module may import its own level and the ones below. The execution
/// interfaces (one sample: `layer`; batches: `batch`; 16 samples per vector lane: `lanes`;
/// the fused SGD step: `fused`) sit below the layers that implement them, with `chain`, the
/// combinator they all implement first.
const LEVELS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "scalar",
            "tensor",
            "zeroed",
            "fusion",
            "layer",
            "shape",
            "shape_errors",
            "mode",
        ],
    ),
    (
        "kernels",
        &[
            "simd",
            "threads",
            "columns",
            "pool",
            "tensor_parts",
            "lane_layout",
            "conv_kernel",
            "conv_reference",
            "conv_gemm",
            "conv_gemm_micro",
            "conv_winograd",
            "conv_winograd_grad",
            "conv_winograd_grad_channels",
            "conv_winograd4",
            "conv_winograd_channels",
            "conv_winograd_tiles",
            "conv_channels",
            "conv_fast",
            "conv_fast_backward",
            "conv_lanes",
            "conv_lanes_backward",
            "linear_kernel",
            "linear_lanes",
            "pool_kernel",
            "pool_lenet",
            "lrn_kernel",
            "batchnorm_kernel",
            "pairs",
        ],
    ),
    (
        "execution",
        &[
            "chain",
            "place",
            "batch",
            "batch_by_sample",
            "lane_layer",
            "lanes",
            "fused",
            "identity",
            "residual",
            "concat",
            "named",
            "no_bias",
            "tap",
        ],
    ),
    (
        "layers",
        &[
            "conv2d",
            "conv2d_f32",
            "avgpool2d_f32",
            "grouped_conv2d",
            "maxpool2d",
            "dropout",
            "batchnorm2d",
            "batchnorm2d_batch",
            "avgpool2d",
            "global_avgpool2d",
            "adaptive_avgpool2d",
            "lrn",
            "relu",
            "flatten",
            "linear",
            "softmax",
            "loss",
        ],
    ),
    (
        "networks",
        &[
            "lenet",
            "classifier",
            "network",
            "resnet",
            "vgg",
            "alexnet",
            "zfnet",
            "googlenet",
            "densenet",
        ],
    ),
    (
        "training, files, pictures",
        &[
            "optim",
            "train",
            "update",
            "augment",
            "weights",
            "pytorch",
            "state_dict",
            "mnist",
            "viz",
            "photo",
            "live",
            "read",
        ],
    ),
];

/// The code of a source file without its unit tests (which may use anything) and comments
/// (a doc link to a type above is no import).
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text
        .find("#[cfg(test)]\nmod tests")
        .or(text.find("#[cfg(all(test"))
    {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// The modules each module of `src/` names through `crate::` paths (items re-exported at the
/// crate root count as their defining module's), from the source text.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // `pub use module::{A, b};` and `pub use module::A;` at the root: item → module
    let mut owner = BTreeMap::new();
    for statement in lib.split("pub use ").skip(1) {
        let statement = &statement[..statement.find(';').unwrap()];
        let (module, items) = statement.split_once("::").unwrap();
        let items = items.trim().trim_matches(|c| c == '{' || c == '}');
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            owner.insert(item.to_string(), module.to_string());
        }
    }
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .filter(|m| m != "lib")
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        // a module's files of its own (`src/simd/x86.rs`) are part of it
        let mut files = vec![src.join(format!("{module}.rs"))];
        if let Ok(dir) = std::fs::read_dir(src.join(module)) {
            let mut own: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
            own.sort();
            files.extend(own);
        }
        let code: String = files.iter().map(|f| code_of(f)).collect();
        let mut deps = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            // `crate::{a::X, B}` names several; `crate::a::X` or `crate::B` one
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap();
                group[..end].split(',').collect()
            } else {
                vec![rest]
            };
            for name in names {
                let name = name.trim();
                let first: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let target = if modules.contains(&first) {
                    Some(first)
                } else {
                    owner.get(&first).cloned()
                };
                if let Some(target) = target.filter(|t| t != module) {
                    deps.insert(target);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

fn level(module: &str) -> usize {
    LEVELS
        .iter()
        .position(|(_, ms)| ms.contains(&module))
        .unwrap_or_else(|| {
            panic!("src/{module}.rs has no level in tests/suite/structure.rs: add it")
        })
}

#[test]
fn modules_import_only_their_level_and_below() {
    let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        for dep in deps {
            if level(dep) > level(module) {
                wrong.push(format!(
                    "{module} ({}) imports {dep} ({})",
                    LEVELS[level(module)].0,
                    LEVELS[level(dep)].0
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the levels:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_itself_through_others() {
    let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // depth-first search for a back edge
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|p| *p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m);
            return Some(cycle);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "an import cycle: {}",
            cycle.unwrap().join(" → ")
        );
    }
}

/// The checker sees what it must: a module that names another through `crate::` is an edge.
#[test]
fn the_import_reader_finds_known_edges() {
    let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph["lenet"].contains("lanes"), "{:?}", graph["lenet"]);
    assert!(
        graph["conv2d"].contains("conv_fast"),
        "{:?}",
        graph["conv2d"]
    );
    assert!(
        graph["conv_fast"].contains("simd"),
        "{:?}",
        graph["conv_fast"]
    );
    assert!(graph["train"].contains("lenet"), "{:?}", graph["train"]);
}
