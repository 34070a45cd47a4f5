import assert from "node:assert/strict";
import {
  monitorAccounting,
  pluginAccounting,
  resourceChanges,
} from "../../agent/executor/accounting.ts";
import { cu, GiB } from "../core/helpers.ts";

const MiB = 2 ** 20;

Deno.test("accounting: changes in cores and MiB, by direction, nothing for no change", () => {
  assert.deepEqual(resourceChanges(cu(1), cu(3)), [
    { resource: "cpu", direction: "inc", amount: 0.5 },
    { resource: "mem", direction: "inc", amount: 2048 },
  ]);
  assert.deepEqual(resourceChanges(cu(3), cu(2)), [
    { resource: "cpu", direction: "dec", amount: 0.25 },
    { resource: "mem", direction: "dec", amount: 1024 },
  ]);
  assert.deepEqual(resourceChanges(cu(2), cu(2)), []);
  assert.deepEqual(resourceChanges({ vCPU: 1000, mem: GiB }, { vCPU: 1000, mem: GiB + 1 }), [
    { resource: "mem", direction: "inc", amount: 1 / MiB },
  ]);
});

Deno.test("accounting: memory in MiB keeps the fraction of huge byte counts", () => {
  // The largest exact byte count: its last byte must still show.
  const bytes = 2 ** 53 - 1;
  const [change] = resourceChanges({ vCPU: 0, mem: 0 }, { vCPU: 0, mem: bytes });
  assert.equal(change.amount, 2 ** 33 - 1 / MiB);
  assert.equal(change.amount * MiB, bytes);
});

Deno.test("accounting: plugin outcomes", () => {
  const table: [
    string,
    ReturnType<typeof pluginAccounting>["outcome"],
    ...Parameters<
      typeof pluginAccounting
    >,
  ][] = [
    ["full grant", "approved", cu(1), cu(3), cu(3)],
    ["part of the increase", "partiallyApproved", cu(1), cu(3), cu(2)],
    ["nothing of the increase", "denied", cu(1), cu(3), cu(1)],
    ["failure", "failed", cu(1), cu(3), null],
    ["first request granted", "approved", null, cu(2), cu(2)],
    // Without a last permit anything but the target is a denial.
    ["first request, less granted", "denied", null, cu(3), cu(2)],
  ];
  for (const [name, outcome, lastPermit, target, permit] of table) {
    const a = pluginAccounting(lastPermit, target, permit);
    assert.equal(a.outcome, outcome, name);
    assert.equal(a.partialApproval, outcome === "partiallyApproved", name);
    assert.equal(a.fullDenial, outcome === "denied", name);
    assert.equal(a.schedulerFailure, outcome === "denied" || outcome === "failed", name);
  }
});

Deno.test("accounting: plugin requested and accepted changes count only with a last permit", () => {
  assert.deepEqual(pluginAccounting(cu(1), cu(3), cu(2)), {
    outcome: "partiallyApproved",
    requested: [
      { resource: "cpu", direction: "inc", amount: 0.5 },
      { resource: "mem", direction: "inc", amount: 2048 },
    ],
    accepted: [
      { resource: "cpu", direction: "inc", amount: 0.25 },
      { resource: "mem", direction: "inc", amount: 1024 },
    ],
    partialApproval: true,
    fullDenial: false,
    schedulerFailure: false,
  });
  const first = pluginAccounting(null, cu(3), cu(3));
  assert.deepEqual([first.requested, first.accepted], [[], []]);
  const failed = pluginAccounting(cu(1), cu(3), null);
  assert.equal(failed.requested.length, 2);
  assert.deepEqual(failed.accepted, []);
});

Deno.test("accounting: monitor requests", () => {
  const down = resourceChanges(cu(3), cu(2));
  assert.deepEqual(monitorAccounting("downscale", cu(3), cu(2), "approved"), {
    requested: down,
    approved: down,
    monitorFailure: false,
    fullDenialDec: false,
  });
  assert.deepEqual(monitorAccounting("downscale", cu(3), cu(2), "denied"), {
    requested: down,
    approved: [],
    monitorFailure: false,
    fullDenialDec: false,
  });
  // The "full denials" counter for decreases counts failed requests, not denials.
  assert.deepEqual(monitorAccounting("downscale", cu(3), cu(2), "failed"), {
    requested: down,
    approved: [],
    monitorFailure: true,
    fullDenialDec: true,
  });
  const up = resourceChanges(cu(2), cu(3));
  assert.deepEqual(monitorAccounting("upscale", cu(2), cu(3), "failed"), {
    requested: up,
    approved: [],
    monitorFailure: true,
    fullDenialDec: false,
  });
});
