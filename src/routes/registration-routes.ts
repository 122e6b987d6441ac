// GET /api/registration: where registration with orchestrator stands (state, last contact, last error, next call).
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { AgentError } from '../errors.js';

export function registerRegistrationRoutes(routes: Routes, services: AgentServices): void {
  routes.read('/api/registration', () => {
    if (!services.registration) throw new AgentError('unavailable', 'registration is not running in this process');
    return services.registration.status();
  });
}
