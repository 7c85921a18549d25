/**
 * The list of vitest test projects. Vitest 4 no longer reads this file by itself, so
 * `vitest.config.ts` imports the list from here: adding a package means adding it here.
 */
export const testProjects = ['packages/server', 'packages/dashboard'];
export default testProjects;
