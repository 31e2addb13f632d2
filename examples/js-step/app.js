// A weft step in JavaScript: sums one column of a CSV input artifact.
//
// Built with componentize-js against weft's WIT (world `step-component`):
//
//   npx componentize-js app.js -w ../../wit -n step-component -d http fetch-event -o csvsum.wasm
//
// Inputs:
// - artifact `table`: CSV text, first line the header;
// - parameter `column`: the column to sum (numbers);
// - parameter `scale` (default 1): each value is multiplied by it;
// - parameter `mode`: `oom` allocates without bound (to show the memory cap).
//
// Outputs: parameters `rows` (data rows), `total`, `max` (the row with the largest
// value, as `name=value` from the first column), and `result` = `total`.
// A thrown string fails the step with that message (WIT `result<_, string>`).

import { log, stepLog } from 'weft:plugin/log@0.1.0';

function param(input, name, dflt) {
  // later entries win: weft passes `args` first, then input parameters
  let found = dflt;
  for (const [k, v] of input.parameters) {
    if (k === name) found = v;
  }
  return found;
}

function number(text, what) {
  const n = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(n)) {
    throw `${what} = ${JSON.stringify(text)} is not a number`;
  }
  return n;
}

export const step = {
  run(input) {
    if (param(input, 'mode') === 'oom') {
      const hog = [];
      for (;;) hog.push(new Uint8Array(1 << 20).fill(1));
    }
    const table = input.artifacts.find((a) => a.name === 'table');
    if (!table) throw "input artifact 'table' is missing";
    const column = param(input, 'column');
    if (column === undefined) throw "parameter 'column' is missing";
    const scale = number(param(input, 'scale', '1'), "parameter 'scale'");
    const lines = new TextDecoder()
      .decode(table.data)
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '');
    if (lines.length === 0) throw "input artifact 'table' is empty";
    const header = lines[0].split(',').map((h) => h.trim());
    const col = header.indexOf(column);
    if (col < 0) {
      throw `column ${JSON.stringify(column)} is not in the header (${header.join(', ')})`;
    }
    let total = 0;
    let max = null;
    for (const [i, line] of lines.slice(1).entries()) {
      const cells = line.split(',');
      const v = number(cells[col] ?? '', `row ${i + 1} column ${column}`) * scale;
      total += v;
      if (max === null || v > max.value) max = { key: cells[0].trim(), value: v };
    }
    const rows = lines.length - 1;
    log('info', `summed ${rows} rows of column ${column}`);
    stepLog(`csvsum: ${rows} rows, ${column} total ${total}`);
    return {
      parameters: [
        ['rows', String(rows)],
        ['total', String(total)],
        ['max', max === null ? '' : `${max.key}=${max.value}`],
      ],
      result: String(total),
      artifacts: [],
    };
  },
};
