package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// The shell completion and the manual page are made from the same command
// and flag definitions as the help, by the binary itself, so they cannot
// fall behind it.

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "SHELL",
		Description: "bash:  source <(demo completion bash)      (or save it in /etc/bash_completion.d/demo)\n" +
			"zsh:   source <(demo completion zsh)\n" +
			"fish:  demo completion fish > ~/.config/fish/completions/demo.fish\n\n" +
			"bash and zsh ask demo itself what completes a word (urfave/cli's --generate-bash-completion), so they\n" +
			"always match the binary on PATH.",
		Action: func(c *cli.Context) error {
			switch shell := c.Args().First(); shell {
			case "bash":
				fmt.Print(bashCompletion)
			case "zsh":
				fmt.Print("#compdef demo\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion)
			case "fish":
				script, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion: %w", err)
				}
				fmt.Print(script)
			default:
				return badFlag("demo completion %q: want bash, zsh or fish", shell)
			}
			return nil
		},
	}
}

// bashCompletion asks demo for the words that may follow the ones typed:
// a command's flags when the word being completed starts with -, else its
// subcommands; bash's own file completion takes over when demo has none.
const bashCompletion = `# bash completion for demo
_demo_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local words=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
    [[ $cur == -* ]] && words+=("$cur")
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _demo_complete demo
`

// completeCommand prints what may follow cmd on a completion request: its
// visible flags that start with the half-typed last word, or its visible
// subcommands.
func completeCommand(cmd *cli.Command) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		last := ""
		if n := len(os.Args); n > 2 {
			last = os.Args[n-2] // the word before --generate-bash-completion
		}
		if strings.HasPrefix(last, "-") {
			typed := strings.TrimLeft(last, "-")
			for _, f := range cmd.VisibleFlags() {
				for _, name := range f.Names() {
					if strings.HasPrefix(name, typed) && len(name) > 1 && !slices.Contains(os.Args[1:len(os.Args)-2], "--"+name) {
						fmt.Fprintln(c.App.Writer, "--"+name)
					}
				}
			}
			return
		}
		for _, sub := range cmd.VisibleCommands() {
			fmt.Fprintln(c.App.Writer, sub.Name)
		}
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (roff), made from the same flag definitions as --help",
		Description: "demo man > demo.1 && man ./demo.1\n" +
			"demo man | gzip > /usr/local/share/man/man1/demo.1.gz   (then: man demo)",
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man: %w", err)
			}
			fmt.Print(page + manEnvironment(c.App))
			return nil
		},
	}
}

// manEnvironment is the page's ENVIRONMENT section: the variables each
// command's flags read, from the same definitions.
func manEnvironment(app *cli.App) string {
	var b strings.Builder
	b.WriteString(".SH ENVIRONMENT\n")
	everyCommand(app.Commands, func(cmd *cli.Command) {
		if cmd.Hidden {
			return
		}
		for _, f := range cmd.VisibleFlags() {
			env, ok := f.(interface{ GetEnvVars() []string })
			if !ok || len(env.GetEnvVars()) == 0 {
				continue
			}
			vars := slices.Clone(env.GetEnvVars())
			for i, v := range vars {
				vars[i] = `\fB` + v + `\fP`
			}
			fmt.Fprintf(&b, ".TP\n%s\n%s \\-\\-%s\n", strings.Join(vars, ", "), cmd.HelpName, strings.ReplaceAll(f.Names()[0], "-", `\-`))
		}
	})
	b.WriteString(".PP\nA flag on the command line wins over its variable.\n")
	return b.String()
}
