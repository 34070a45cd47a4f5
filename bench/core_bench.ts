/** `deno bench` for the hot paths of the core. */

import { calculateGoalCU, goalCU } from "../core/mod.ts";
import { deployedScaling, lfcMetrics, steadyState, systemMetrics } from "./core_fixtures.ts";

const steady = steadyState(false);
let t = 10;
Deno.bench("nextActions, steady VM with a permit", { group: "nextActions", baseline: true }, () => {
  steady.nextActions(t++);
});

const withLfc = steadyState(true);
let u = 10;
Deno.bench("nextActions, LFC-enabled VM (60 windows)", { group: "nextActions" }, () => {
  withLfc.nextActions(u++);
});

const cu = { vCPU: 250, mem: 1024 ** 3 };
const plain = deployedScaling(false);
const lfc = deployedScaling(true);
Deno.bench("calculateGoalCU, system metrics only", { group: "goal" }, () => {
  goalCU(calculateGoalCU(plain, cu, systemMetrics, null));
});
Deno.bench("calculateGoalCU, system + LFC metrics", { group: "goal" }, () => {
  goalCU(calculateGoalCU(lfc, cu, systemMetrics, lfcMetrics));
});
