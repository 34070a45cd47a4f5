/**
 * The autoscaler-agent daemon: reads its environment and config, then runs the agent until
 * SIGTERM or SIGINT. Start-up failures are logged once at fatal level and exit with status 2.
 *
 * @module
 */

import { startAgent } from "./agent/agent.ts";
import { loadConfig } from "./agent/config/config.ts";
import { readEnv } from "./agent/config/env.ts";
import { loadKubeConfig } from "./agent/k8s/client.ts";
import { agentLog, setupLogging } from "./lib/log.ts";

/** Exit status of a failed start, as the reference's panic. */
const EXIT_STARTUP_FAILURE = 2;

async function main(): Promise<number> {
  await setupLogging();
  const log = agentLog();
  // The last line of defence: a stray rejection is logged, never a process exit (agent.md 7.4).
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
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => stop.resolve(signal));
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
  await agent.stop();
  log.info("main loop returned without issue, exiting");
  return 0;
}

Deno.exit(await main());
