// Damage a tenant of the sample database the way real incidents do: the demo's "something
// went wrong" step, and the tests' starting point for a restore.
import type { ClientBase } from 'pg';

/** Deletes in parent and child tables, updates, and new rows, all in one tenant. */
export async function damageTenant(c: ClientBase, tenantId: string): Promise<void> {
  const t = tenantId.replace(/'/g, "''");
  const intruder = `intruder-${Date.now()}`;
  await c.query(`
    -- delete two projects with everything below them (children first, as the app would)
    CREATE TEMP TABLE gone AS SELECT project_id FROM app.projects WHERE tenant_id = '${t}' ORDER BY project_id LIMIT 2;
    DELETE FROM app.task_labels WHERE task_id IN (SELECT task_id FROM app.tasks WHERE project_id IN (SELECT project_id FROM gone));
    DELETE FROM app.comments WHERE task_id IN (SELECT task_id FROM app.tasks WHERE project_id IN (SELECT project_id FROM gone));
    DELETE FROM app.tasks WHERE project_id IN (SELECT project_id FROM gone);
    DELETE FROM app.projects WHERE project_id IN (SELECT project_id FROM gone);
    DROP TABLE gone;
    -- a child table alone, a partitioned table, a table without a key, a quoted one
    DELETE FROM app.comments WHERE comment_id IN (SELECT c.comment_id FROM app.comments c JOIN app.tasks USING (task_id) JOIN app.projects p USING (project_id) WHERE p.tenant_id = '${t}' ORDER BY 1 DESC LIMIT 5);
    DELETE FROM app.events WHERE tenant_id = '${t}' AND event_id % 7 = 0;
    DELETE FROM app.page_views WHERE ctid IN (SELECT ctid FROM app.page_views WHERE tenant_id = '${t}' LIMIT 3);
    -- updates
    UPDATE app.users SET display_name = 'hacked', settings = '{"theme": "pink"}' WHERE user_id IN (SELECT user_id FROM app.users WHERE tenant_id = '${t}' ORDER BY user_id LIMIT 5);
    UPDATE app.tasks SET title = 'overwritten', status = 'done' WHERE task_id IN (SELECT t.task_id FROM app.tasks t JOIN app.projects p USING (project_id) WHERE p.tenant_id = '${t}' ORDER BY 1 LIMIT 4);
    UPDATE app."AuditLog" SET "Actor" = NULL WHERE "auditId" IN (SELECT "auditId" FROM app."AuditLog" WHERE tenant_id = '${t}' ORDER BY 1 LIMIT 3);
    UPDATE app.tenants SET name = 'Renamed' WHERE tenant_id = '${t}';
    -- new rows, including a new parent with a child
    INSERT INTO app.users (tenant_id, email, created_at) VALUES ('${t}', '${intruder}@${t}.example', now());
    INSERT INTO app.projects (tenant_id, owner_id, name) SELECT '${t}', max(user_id), 'new project' FROM app.users WHERE tenant_id = '${t}';
    INSERT INTO app.tasks (project_id, title) SELECT max(project_id), 'new task' FROM app.projects WHERE tenant_id = '${t}';
    INSERT INTO app.page_views (tenant_id, path, viewed_at) VALUES ('${t}', '/new', now());`);
}

