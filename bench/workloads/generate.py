#!/usr/bin/env python3
"""Regenerates the benchmark workflow files (../../shared/bench/README.md defines them).
The YAML files are committed; this script only documents how they were made."""

def w1_proc():
    steps = []
    for i in range(1, 41):
        x = "0" if i == 1 else "{{steps.s%d.outputs.result}}" % (i - 1)
        steps.append('    - - {name: s%d, template: inc, arguments: {parameters: [{name: x, value: "%s"}]}}' % (i, x))
    return """# W1 chain40 (proc): 40 steps in sequence, each x+1 of the previous step's result. Result: 40.
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: w1-chain40-proc-}
spec:
  entrypoint: main
  templates:
  - name: inc
    inputs: {parameters: [{name: x}]}
    container: {image: busybox, command: [sh, -c, 'echo $(({{inputs.parameters.x}} + 1))']}
  - name: main
    steps:
""" + "\n".join(steps) + "\n"

def w3_proc():
    return """# W3 diamond (proc): A -> (B, C) -> D, each `echo hi` appended to its inputs' outputs. Result: hihihihihi.
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: w3-diamond-proc-}
spec:
  entrypoint: main
  templates:
  - name: hi
    inputs: {parameters: [{name: prev, value: ""}]}
    container: {image: busybox, command: [sh, -c, 'echo {{inputs.parameters.prev}}hi']}
  - name: main
    dag:
      tasks:
      - {name: A, template: hi}
      - {name: B, depends: A, template: hi, arguments: {parameters: [{name: prev, value: "{{tasks.A.outputs.result}}"}]}}
      - {name: C, depends: A, template: hi, arguments: {parameters: [{name: prev, value: "{{tasks.A.outputs.result}}"}]}}
      - {name: D, depends: B && C, template: hi, arguments: {parameters: [{name: prev, value: "{{tasks.B.outputs.result}}{{tasks.C.outputs.result}}"}]}}
"""

def w4_proc():
    tasks = []
    for l in range(10):
        for i in range(100):
            if l == 0:
                tasks.append('      - {name: t%d-%d, template: inc, arguments: {parameters: [{name: x, value: "0"}]}}' % (l, i))
            else:
                tasks.append('      - {name: t%d-%d, depends: t%d-%d, template: inc, arguments: {parameters: [{name: x, value: "{{tasks.t%d-%d.outputs.result}}"}]}}' % (l, i, l - 1, i, l - 1, i))
    return """# W4 dag1000 (proc): 10 layers x 100; (l, i) depends on (l-1, i) only. Every chain ends at 10.
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: w4-dag1000-proc-}
spec:
  entrypoint: main
  templates:
  - name: inc
    inputs: {parameters: [{name: x}]}
    container: {image: busybox, command: [sh, -c, 'echo $(({{inputs.parameters.x}} + 1))']}
  - name: main
    dag:
      tasks:
""" + "\n".join(tasks) + "\n"

ARITH = """  - name: %s
    inputs: {parameters: [{name: x}]}
    plugin: {wasm: {component: steps/arith.wasm, args: {op: %s}}}
"""

def w1_wasm():
    steps = []
    for i in range(1, 41):
        x = "0" if i == 1 else "{{steps.s%d.outputs.result}}" % (i - 1)
        steps.append('    - - {name: s%d, template: inc, arguments: {parameters: [{name: x, value: "%s"}]}}' % (i, x))
    return """# W1 chain40 (wasm): 40 Wasm steps in sequence, each x+1 of the previous step's result. Result: 40.
# `steps/arith.wasm` (plugins/testing/arith) is relative to weft's working directory; `weft bench` provides it.
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: w1-chain40-wasm-}
spec:
  entrypoint: main
  templates:
""" + ARITH % ("inc", "inc") + """  - name: main
    steps:
""" + "\n".join(steps) + "\n"

def w2_wasm():
    return """# W2 fanout200 (wasm): one step outputs [0..199]; 200 parallel x*2 steps; one step sums them. Result: 39800.
# `steps/arith.wasm` (plugins/testing/arith) is relative to weft's working directory; `weft bench` provides it.
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: w2-fanout200-wasm-}
spec:
  entrypoint: main
  templates:
  - name: range
    plugin: {wasm: {component: steps/arith.wasm, args: {op: range, n: "200"}}}
""" + ARITH % ("double", "double") + """  - name: sum
    inputs: {parameters: [{name: xs}]}
    plugin: {wasm: {component: steps/arith.wasm, args: {op: sum}}}
  - name: main
    steps:
    - - {name: gen, template: range}
    - - {name: double, template: double, withParam: "{{steps.gen.outputs.result}}", arguments: {parameters: [{name: x, value: "{{item}}"}]}}
    - - {name: total, template: sum, arguments: {parameters: [{name: xs, value: "{{steps.double.outputs.result}}"}]}}
"""

def w4_wasm():
    return w4_proc().replace("(proc)", "(wasm)").replace("w4-dag1000-proc-", "w4-dag1000-wasm-").replace(
        """  - name: inc
    inputs: {parameters: [{name: x}]}
    container: {image: busybox, command: [sh, -c, 'echo $(({{inputs.parameters.x}} + 1))']}
""", ARITH % ("inc", "inc"))

for name, text in [("w1-chain40-proc.yaml", w1_proc()), ("w3-diamond-proc.yaml", w3_proc()), ("w4-dag1000-proc.yaml", w4_proc()),
                   ("w1-chain40-wasm.yaml", w1_wasm()), ("w2-fanout200-wasm.yaml", w2_wasm()), ("w4-dag1000-wasm.yaml", w4_wasm())]:
    open(name, "w").write(text)
