package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// manCommand prints the man page, made from the command definitions so that
// it cannot drift from them (make man writes it to docs/probe.1).
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			man, err := c.App.ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man page: %w", err)
			}
			_, err = fmt.Fprint(c.App.Writer, man)
			return err
		},
	}
}

// Shell completion asks the binary itself (--generate-bash-completion), so
// these scripts only pass the words on.
const (
	bashCompletion = `# bash completion for probe: source <(probe completion bash)
_probe_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" words=("${COMP_WORDS[@]:0:COMP_CWORD}") opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _probe_complete probe
`
	zshCompletion = `#compdef probe
# zsh completion for probe: probe completion zsh > "${fpath[1]}/_probe"
_probe() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _probe probe
`
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(probe completion bash), or zsh",
		ArgsUsage: "bash|zsh",
		Action: func(c *cli.Context) error {
			switch strings.Join(c.Args().Slice(), " ") {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			default:
				return errors.New("give the shell: probe completion bash, or probe completion zsh")
			}
			return nil
		},
	}
}
