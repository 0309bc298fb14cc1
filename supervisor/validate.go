package supervisor

import "demo/setting"

// Validate checks the settings a user chooses; its errors are
// *setting.Error naming the Config field. Run checks them too.
func (c *Config) Validate() error {
	switch {
	case c.Workers < 1:
		return setting.Errorf("Workers", "must be at least 1, got %d", c.Workers)
	case c.MaxWorkers > 0 && c.Workers > c.MaxWorkers:
		return setting.Errorf("Workers", "is %d, but at most %d workers can share this socket", c.Workers, c.MaxWorkers)
	case c.GracefulTimeout < 0:
		return setting.Errorf("GracefulTimeout", "must be 0 (no grace) or more, got %v", c.GracefulTimeout)
	case c.HealthcheckTimeout <= 0:
		return setting.Errorf("HealthcheckTimeout", "must be positive, got %v", c.HealthcheckTimeout)
	case c.Timeout < 0:
		return setting.Errorf("Timeout", "must be 0 (off) or more, got %v", c.Timeout)
	}
	return nil
}
