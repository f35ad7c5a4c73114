import t from 'tap';
import { startPostgres } from '../../helpers/postgres.js';
t.test('a primary and a streaming standby from the npm package: a row written on the primary is there after it is killed and the standby promoted', async (t) => {
  const s0 = Date.now();
  const c = await startPostgres({ standby: true });
  t.comment(`up in ${Date.now() - s0} ms`);
  await c.primary.query('CREATE TABLE x (a int)');
  await c.primary.query('INSERT INTO x VALUES (1)');
  t.equal(await c.standby!.inRecovery(), true);
  await c.primary.kill();
  await c.standby!.promote();
  t.equal(await c.standby!.inRecovery(), false);
  const rows = await c.standby!.query('SELECT * FROM x');
  t.same(rows, [{ a: 1 }]);
  await c.close();
});
