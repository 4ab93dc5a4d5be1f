package io.tspipe.hack.scdf;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.actuate.autoconfigure.security.servlet.ManagementWebSecurityAutoConfiguration;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.security.servlet.SecurityAutoConfiguration;
import org.springframework.boot.autoconfigure.security.servlet.UserDetailsServiceAutoConfiguration;
import org.springframework.boot.autoconfigure.session.SessionAutoConfiguration;
import org.springframework.cloud.dataflow.server.EnableDataFlowServer;
import org.springframework.cloud.deployer.spi.cloudfoundry.CloudFoundryDeployerAutoConfiguration;
import org.springframework.cloud.deployer.spi.kubernetes.KubernetesAutoConfiguration;
import org.springframework.cloud.deployer.spi.local.LocalDeployerAutoConfiguration;
import org.springframework.cloud.task.configuration.MetricsAutoConfiguration;
import org.springframework.cloud.task.configuration.SimpleTaskAutoConfiguration;

/**
 * The Data Flow server main class. Upstream's spring-cloud-dataflow-server:2.11.5 jar (which
 * holds only this class and its configuration around spring-cloud-starter-dataflow-server) is
 * not on Maven Central, so hack/scdf/pom.xml rebuilds it with the same exclusions.
 */
@SpringBootApplication(exclude = {
		MetricsAutoConfiguration.class,
		SessionAutoConfiguration.class,
		SimpleTaskAutoConfiguration.class,
		ManagementWebSecurityAutoConfiguration.class,
		SecurityAutoConfiguration.class,
		UserDetailsServiceAutoConfiguration.class,
		LocalDeployerAutoConfiguration.class,
		CloudFoundryDeployerAutoConfiguration.class,
		KubernetesAutoConfiguration.class
})
@EnableDataFlowServer
public class DataFlowServer {

	public static void main(String[] args) {
		SpringApplication.run(DataFlowServer.class, args);
	}
}
