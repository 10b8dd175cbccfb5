/**
 * Preloaded into the soak's relays (node --expose-gc --require bench/soak/relayProbe.js main.js):
 * answers memory-sample requests over the IPC channel with process.memoryUsage() before and
 * after a forced full GC (unless asked for none), the active handles by type and the CPU time
 * used; and ends the relay
 * when the soak process goes away (the channel closes), so no relay outlives a killed soak.
 * It changes nothing else in the relay and is no part of it.
 */

if (typeof process.send === 'function') {
  process.on('message', (m) => {
    if (m === null || typeof m !== 'object' || m.type !== 'sample') return;
    const before = process.memoryUsage();
    const started = performance.now();
    if (m.gc !== false && typeof globalThis.gc === 'function') globalThis.gc();
    const gcMs = performance.now() - started;
    const after = process.memoryUsage();
    const resources = {};
    for (const r of process.getActiveResourcesInfo()) resources[r] = (resources[r] ?? 0) + 1;
    const cpu = process.cpuUsage();
    const gc = m.gc !== false && typeof globalThis.gc === 'function';
    process.send({ type: 'sample', id: m.id, before, after, gcMs, gc, resources, cpuMs: (cpu.user + cpu.system) / 1000 });
  });
  process.on('disconnect', () => process.exit(0));
  process.channel?.unref();
}
