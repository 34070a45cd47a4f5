/**
 * The autoscaler-agent daemon: reads its environment and config, then runs the agent until
 * SIGTERM or SIGINT. Start-up failures are logged once at fatal level and exit with status 2.
 *
 * Shutdown is bounded: the process exits within {@link SHUTDOWN_LIMIT_MS} of the signal whatever
 * the agent's stop is waiting for (the DaemonSet's grace period is 30 s), with status 1 if the
 * stop did not finish; a second signal exits at once.
 *
 * @module
 */

import { startAgent } from "./agent/agent.ts";
import { loadConfig } from "./agent/config/config.ts";
import { readEnv } from "./agent/config/env.ts";
import { loadKubeConfig } from "./agent/k8s/kubeconfig.ts";
import { agentLog, setupLogging } from "./lib/log.ts";
import { systemClock } from "./lib/clock.ts";

/** Exit status of a failed start, as the reference's panic. */
const EXIT_STARTUP_FAILURE = 2;
/**
 * Exit status of a shutdown that did not finish or left usage unsaved, or of a bug that escaped
 * `main`.
 */
const EXIT_FAILURE = 1;
/** Within the DaemonSet's 30 s grace period, with room for the process to exit. */
const SHUTDOWN_LIMIT_MS = 25_000;

async function main(): Promise<number> {
  await setupLogging();
  const log = agentLog();
  // The last line of defence: a stray rejection is logged, never a process exit.
  // `main`'s own result is handled below, so a failed `main` never comes through here.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log.error("unhandled promise rejection", { error: event.reason });
  });

  const fail = (step: string, err: unknown) => {
    const error = err instanceof Error ? err.message : String(err);
    log.error(`failed ${step}`, { error });
    return EXIT_STARTUP_FAILURE;
  };

  let env;
  try {
    env = readEnv();
  } catch (err) {
    return fail("reading the environment", err);
  }
  log.info("Got environment args", { args: env });

  let config;
  try {
    config = await loadConfig(env.ConfigPath);
  } catch (err) {
    return fail("reading the config", err);
  }
  log.info("Got config", { config });

  let kubeConfig;
  try {
    kubeConfig = loadKubeConfig();
  } catch (err) {
    return fail("building the Kubernetes config", err);
  }

  const stop = Promise.withResolvers<string>();
  let signals = 0;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => {
      if (++signals === 1) return stop.resolve(signal);
      log.error("second signal while shutting down, exiting now", { signal });
      Deno.exit(EXIT_FAILURE);
    });
  }

  let agent;
  try {
    agent = await startAgent({
      config,
      nodeName: env.K8sNodeName,
      podIP: env.K8sPodIP,
      kubeConfig,
      stateDir: env.StateDir,
    });
  } catch (err) {
    return fail("starting the agent", err);
  }
  const signal = await stop.promise;
  log.info("received signal, shutting down", { signal });
  const report = await Promise.race([
    agent.stop(),
    systemClock.sleep(SHUTDOWN_LIMIT_MS).then(() => null),
  ]);
  if (report === null) {
    log.error("shutdown did not finish in time, exiting anyway", { limitMs: SHUTDOWN_LIMIT_MS });
    return EXIT_FAILURE;
  }
  if (report.unsavedUsage.length > 0) {
    // Each client's loss is logged with its amount by the reporting pipeline.
    log.error("exiting with billing usage neither delivered nor saved", {
      clients: report.unsavedUsage.map((u) => u.client),
    });
    return EXIT_FAILURE;
  }
  log.info("main loop returned without issue, exiting");
  return 0;
}

main().then(
  (code) => Deno.exit(code),
  (err) => {
    // A bug: say so and exit, rather than leave a process that no longer does its work.
    agentLog().error("main failed", { error: err });
    Deno.exit(EXIT_FAILURE);
  },
);
