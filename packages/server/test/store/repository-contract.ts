/**
 * The one conformance suite of the repository contract (`src/store/repositories.ts`). Every backend runs
 * it unchanged: SQLite in `sqlite-repositories.test.ts`, PostgreSQL in `postgres-repositories.test.ts`. It is written against
 * the interfaces only — no SQL, no backend types, no control over the backend's clock.
 */
import { describe } from 'vitest';
import { describeClaimsContract } from './contract/claims.js';
import { describeDataContract } from './contract/data.js';
import { useRepositories, type MakeRepositories, type RepositoryContractOptions } from './contract/fixture.js';
import { describeLeaseRepositoryContract } from './contract/leases.js';
import { describeRulesContract } from './contract/rules.js';

export type { MakeRepositories, RepositoryContractOptions } from './contract/fixture.js';
export { describeLeaseRepositoryContract } from './contract/leases.js';
export type { MakeLeaseRepository } from './contract/leases.js';

/**
 * @param makeRepositories opens fresh, empty repositories for one test; `cleanup` closes them and
 *   removes what they stored.
 */
export function describeRepositoryContract(name: string, makeRepositories: MakeRepositories, options: RepositoryContractOptions = {}): void {
  describe(`Repositories contract: ${name}`, () => {
    const repositories = useRepositories(makeRepositories);
    describeDataContract(repositories, options);
    describeRulesContract(repositories);
    describeClaimsContract(repositories);
  });
  describeLeaseRepositoryContract(name, async () => {
    const { repos, cleanup } = await makeRepositories();
    return { leases: repos.leases, cleanup };
  });
}
