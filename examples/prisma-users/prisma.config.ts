// The Prisma CLI's configuration: `prisma migrate deploy` runs Prisma's schema engine
// as WebAssembly (engine "js") through the pg driver adapter, so no Rust engine
// binary is downloaded or needed. prisma/driver.cjs says why the adapter is wrapped.
import path from "node:path";
import { defineConfig } from "prisma/config";
import { migrateAdapter, unrefEngineTimers } from "./prisma/driver.cjs";

unrefEngineTimers();

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: path.join("prisma", "schema.prisma"),
  migrations: { path: path.join("prisma", "migrations") },
  adapter: async () => migrateAdapter(),
});
